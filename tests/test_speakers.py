"""Speaker embeddings, the voices of an index, and speaker-filtered queries, on two synthetic voices.

Two espeak-ng voices that differ in accent, variant and pitch (a high female en-us and a low male RP voice)
stand in for two people; the random word encoder keeps indexing fast (these tests are about the speaker side).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import noise, write_audio
from typer.testing import CliRunner

from awesearch.cli import app

runner = CliRunner()
VOICE_A = ("en-us", "f4", 80)  # accent, variant, pitch
VOICE_B = ("en-gb-x-rp", "m7", 20)
VOICE_C = ("en-us", "whisper", 50)  # the espeak voice least like A and B to the speaker model
TEXT_A = ["the prince of persia went to the market and bought seven apples", "yesterday i spoke with a doctor about the weather in london"]
TEXT_B = ["she sells sea shells by the sea shore on a sunny morning", "the committee decided to postpone the vote until the next session"]
CLIP_TEXT = ["my favourite colour is green and i like to walk in the park"]


def say(sentences: list[str], voice: tuple[str, str, int], gap_s: float = 0.5) -> np.ndarray:
    from awesearch.tts import synthesize

    parts = [np.zeros(int(gap_s * 16000), np.float32)]
    for text in sentences:
        parts += [synthesize(text, voice=voice[0], variant=voice[1], pitch=voice[2]).audio.astype(np.float32), np.zeros(int(gap_s * 16000), np.float32)]
    audio = np.concatenate(parts)
    return audio + noise(len(audio) / 16000, amp=0.002)


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory):
    """corpus/{alice,bob,mixed}.wav, example clips of each voice, and bad examples."""
    root = tmp_path_factory.mktemp("voices")
    write_audio(root / "corpus" / "alice.wav", say(TEXT_A, VOICE_A))
    write_audio(root / "corpus" / "bob.wav", say(TEXT_B, VOICE_B))
    write_audio(root / "corpus" / "mixed.wav", np.concatenate([say(TEXT_A[:1], VOICE_A), say(TEXT_B[:1], VOICE_B)]))
    write_audio(root / "alice_clip.wav", say(CLIP_TEXT, VOICE_A))
    write_audio(root / "bob_clip.wav", say(CLIP_TEXT, VOICE_B))
    write_audio(root / "alice_more.wav", say(TEXT_B[1:], VOICE_A))
    write_audio(root / "silence.wav", noise(3.0, amp=1e-4))
    write_audio(root / "short.wav", say(["yes"], VOICE_A))
    (root / "broken.wav").write_bytes(b"RIFF not really audio")
    return root


@pytest.fixture(scope="module")
def model():
    from awesearch.speakers import load_speaker_model

    return load_speaker_model()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, contains: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and contains in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_speech_pieces_merge_keep_and_cut():
    from awesearch.speakers import MAX_PIECE_S, ample, speech_pieces

    regions = [(0.0, 0.5), (0.6, 1.4), (3.0, 3.5), (5.0, 12.0)]  # 0.1 s pause merges; 0.5 s alone is its own piece
    pieces = speech_pieces(regions)
    assert pieces[:2].tolist() == [[0.0, 1.4], [3.0, 3.5]]
    assert all((e - s) <= MAX_PIECE_S + 1e-9 for s, e in pieces)
    long = pieces[2:]
    assert len(long) == 3 and long[0, 0] == 5.0 and long[-1, 1] == 12.0 and np.allclose(long[1:, 0], long[:-1, 1])
    assert ample(pieces).tolist() == [[0.0, 1.4]] + long.tolist()  # the 0.5 s piece makes no voice or prototype
    clipped = speech_pieces(regions, lo=6.0, hi=8.0)
    assert clipped.tolist() == [[6.0, 8.0]]


def test_context_averages_agreeing_neighbours_only():
    """A piece is judged with the neighbours of its recording that agree with it: not across a change of voice,
    not across a long pause, not across recordings."""
    from awesearch.speaker_index import CONTEXT_GAP_S, SpeakerData
    from awesearch.speakers import load_speaker_model

    model = load_speaker_model()
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 256))
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)  # two unrelated voices (cosine ~0)
    noisy = a + 0.6 * rng.normal(size=256) / 16
    emb = np.stack([a, noisy / np.linalg.norm(noisy), b, a, a]).astype(np.float32)
    starts = np.array([0.0, 2.0, 3.0, 5.0 + CONTEXT_GAP_S + 1, 0.0])
    data = SpeakerData(["x.wav", "y.wav"], np.array([0, 0, 0, 0, 1]), starts, starts + np.array([2.0, 0.5, 2, 2, 2]), emb)
    ctx = data.with_context(model).context
    assert np.allclose(ctx[2], b, atol=1e-6)  # the other voice takes nothing from its neighbours
    assert np.allclose(ctx[3], a, atol=1e-6) and np.allclose(ctx[4], a, atol=1e-6)  # too far; another recording
    want = (2.0 * a + 0.5 * emb[1]) / 2.5  # the short piece and its agreeing neighbour, weighted by seconds
    assert np.allclose(ctx[1], want, atol=1e-5) and np.allclose(ctx[0], want, atol=1e-5)
    assert float(ctx[1] @ a) > float(emb[1] @ a)


def test_two_voices_are_told_apart(voices_dir, model):
    from awesearch.audio import load_audio
    from awesearch.speakers import ACCEPT_P
    from awesearch.vad import speech_regions

    emb = {}
    for name in ("alice_clip", "bob_clip", "alice_more"):
        audio = load_audio(voices_dir / f"{name}.wav")
        _, e = model.embed_speech(audio, speech_regions(audio))
        assert len(e) >= 1 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
        emb[name] = e.mean(0) / np.linalg.norm(e.mean(0))
    same = float(emb["alice_clip"] @ emb["alice_more"])
    other = float(emb["alice_clip"] @ emb["bob_clip"])
    assert same > other + 0.2
    assert model.probability(same) >= ACCEPT_P > model.probability(other)


def test_asset_is_checked(tmp_path, monkeypatch):
    import torch

    from awesearch import encoder, speakers
    from awesearch.errors import CheckpointError
    from awesearch.speakers import load_speaker_model

    load_speaker_model.cache_clear()
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  speaker-v1.ckpt\n")  # the shipped asset must match its line in SHA256SUMS
    monkeypatch.setattr(encoder, "CHECKSUMS", sums)
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        speakers.load_speaker_model()
    monkeypatch.undo()
    load_speaker_model.cache_clear()
    assert load_speaker_model().name

    bad = tmp_path / "bad.pt"
    torch.save({"magic": "something-else"}, bad)
    with pytest.raises(CheckpointError, match="not an awesearch speaker model"):
        load_speaker_model(str(bad))
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_speaker_model(str(tmp_path / "junk.pt"))


def kaldi_fbank_reference(x: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Kaldi's fbank (feature-window.cc, mel-computations.cc) frame by frame in float64, as
    torchaudio.compliance.kaldi.fbank(x, num_mel_bins=n_mels, dither=0) computes it."""
    mel = lambda f: 1127.0 * np.log(1.0 + f / 700.0)  # noqa: E731
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 399)) ** 0.85  # povey
    lo, hi = mel(20.0), mel(8000.0)
    delta = (hi - lo) / (n_mels + 1)
    out = []
    for start in range(0, len(x) - 400 + 1, 160):
        frame = x[start : start + 400].astype(np.float64)
        frame = frame - frame.mean()
        for i in range(399, 0, -1):
            frame[i] -= 0.97 * frame[i - 1]
        frame[0] -= 0.97 * frame[0]
        power = np.abs(np.fft.rfft(frame * window, 512)) ** 2
        energies = []
        for m in range(n_mels):
            left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
            e = 0.0
            for k in range(256):
                z = mel(k * 16000 / 512)
                if left < z < right:
                    e += power[k] * ((z - left) / (centre - left) if z <= centre else (right - z) / (right - centre))
            energies.append(max(e, np.finfo(np.float32).eps))
        out.append(np.log(energies))
    return np.array(out)


def test_kaldi_fbank_matches_a_reference(voices_dir):
    """Our torch filterbank against Kaldi's algorithm written out (also checked against kaldi-native-fbank
    1.22.4 on real clips during development: within 5e-4)."""
    from awesearch.audio import load_audio
    from awesearch.campplus import frames_needed, kaldi_fbank

    audio = load_audio(voices_dir / "alice_clip.wav")[8000:8000 + 16000 // 4 + 123]  # speech, an odd length
    ours = kaldi_fbank(audio).numpy()
    ref = kaldi_fbank_reference(audio)
    assert ours.shape == ref.shape == (frames_needed(len(audio) / 16000), 80)
    assert np.abs(ours - ref).max() < 2e-3
    assert kaldi_fbank(audio[:399]).shape == (0, 80)


def test_campplus_network_shape_and_batching():
    """The network has the shipped checkpoint's shape (6.93 M numbers in 937 tensors) and embeds a batch as it
    embeds each of its members."""
    import torch

    from awesearch.campplus import CAMPPlus

    torch.manual_seed(0)
    net = CAMPPlus().eval()
    state = net.state_dict()
    assert len(state) == 937 and sum(v.numel() for v in state.values()) == 6_930_842
    x = torch.randn(3, 150, 80)
    with torch.inference_mode():
        batch = net(x)
        alone = torch.cat([net(x[i : i + 1]) for i in range(3)])
    assert batch.shape == (3, 192) and torch.allclose(batch, alone, atol=1e-4)


def test_crops_are_centred_and_short_pieces_repeated():
    import torch

    from awesearch.speaker_verify import centre_crop

    fb = torch.arange(10.0)[:, None].repeat(1, 2)
    assert centre_crop(fb, 4)[:, 0].tolist() == [-1.5, -0.5, 0.5, 1.5]  # frames 3..6, minus their mean
    short = centre_crop(fb[:3], 7)[:, 0] + 1.0  # frames 0 1 2 0 1 2 0, mean 6/7
    assert np.allclose(short.numpy(), np.array([0, 1, 2, 0, 1, 2, 0]) - 6 / 7 + 1.0)


def test_verifier_asset_is_checked(tmp_path, monkeypatch):
    """The shipped verifier must match its SHA256SUMS line; another file's magic or version is refused."""
    import torch

    from awesearch import encoder
    from awesearch.errors import CheckpointError
    from awesearch.speaker_verify import VERIFY_ASSET, VERIFY_MAGIC, load_verifier

    load_verifier.cache_clear()
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'0' * 64}  {VERIFY_ASSET.name}\n")
    monkeypatch.setattr(encoder, "CHECKSUMS", sums)
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_verifier()
    monkeypatch.undo()
    load_verifier.cache_clear()
    v = load_verifier()
    assert v.name == "campplus-zh-en-int8-verify-v1" and v.dims.embedding == 192
    for bad, message in [
        ({"magic": "awesearch-speaker-model", "version": 2}, "not an awesearch speaker verifier"),
        ({"magic": VERIFY_MAGIC, "version": 99}, "version 99"),
    ]:
        torch.save(bad, tmp_path / "bad.ckpt")
        with pytest.raises(CheckpointError, match=message):
            load_verifier(str(tmp_path / "bad.ckpt"))
        load_verifier.cache_clear()
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_verifier(str(tmp_path / "junk.ckpt"))


def test_verifier_tells_two_voices_apart(voices_dir):
    from awesearch.speaker_verify import load_verifier
    from awesearch.speakers import ACCEPT_P, SpeakerExample, examples_prototype

    v = load_verifier()
    proto = {n: examples_prototype(v, [SpeakerExample(str(voices_dir / f"{n}.wav"))]) for n in ("alice_clip", "bob_clip", "alice_more")}
    same, other = float(proto["alice_clip"] @ proto["alice_more"]), float(proto["alice_clip"] @ proto["bob_clip"])
    assert same > other + 0.2
    assert v.probability(same) >= ACCEPT_P > v.probability(other)


@pytest.fixture(scope="module")
def index(voices_dir):
    from awesearch.indexer import index_paths

    idx = voices_dir / "idx"
    report = index_paths([voices_dir / "corpus"], idx, model="random")
    assert report.indexed == 3
    return idx


def test_pieces_are_stored_per_file(index):
    from awesearch.speaker_index import load_speaker_data
    from awesearch.store import IndexStore

    store = IndexStore.open(index)
    assert store.manifest.speaker_tables and store.manifest.speaker_model
    assert {f"{t.name}.parquet" for t in store.manifest.speaker_tables} <= store.referenced_names()
    data = load_speaker_data(store)
    assert sorted(p.rsplit("/", 1)[1] for p in data.by_path) == ["alice.wav", "bob.wav", "mixed.wav"]
    assert np.all(data.ends > data.starts) and np.all(data.ends - data.starts <= 3.0 + 1e-6)


def test_speaker_table_magic_is_checked(index, tmp_path):
    from awesearch.errors import IndexFormatError
    from awesearch.speaker_index import SpeakerTableInfo, read_speaker_table
    from awesearch.store import write_parquet

    import pyarrow as pa

    write_parquet(tmp_path / "spk-000001.parquet", {"file_id": [1]}, pa.schema([("file_id", pa.int64())]))
    with pytest.raises(IndexFormatError, match="not a speaker table"):
        read_speaker_table(tmp_path, SpeakerTableInfo("spk-000001", 1))


def test_speakers_lists_names_and_filters(index, voices_dir):
    listed = invoke("speakers", "--index", index, "--json")
    assert listed.exit_code == 0, listed.output
    voices = json.loads(listed.stdout)
    assert len(voices) == 2
    by_sample = {v["sample_path"].rsplit("/", 1)[1]: v for v in voices}
    assert all(v["files"] == 2 and v["speech_s"] > 3 for v in voices)  # each voice: its own file + mixed.wav
    table = invoke("speakers", "--index", index)
    assert table.exit_code == 0 and "S1" in table.stdout and "S2" in table.stdout

    # which id is alice: the voice whose sample is in alice.wav, or the one that is not bob's
    alice = next((v["id"] for k, v in by_sample.items() if k == "alice.wav"), None) or next(
        v["id"] for v in voices if v is not by_sample.get("bob.wav")
    )
    named = invoke("speakers", "name", alice, "Interviewer", "--index", index)
    assert named.exit_code == 0 and "Interviewer" in named.stdout
    again = json.loads(invoke("speakers", "--index", index, "--json").stdout)
    assert {v["id"]: v["name"] for v in again}[alice] == "Interviewer"

    res = invoke("query", "--text", "prince", "--speaker-id", "interviewer", "--index", index, "--json", "-k", "50")
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits and all(h["speaker_score"] >= 0.5 for h in hits)
    assert {h["path"].rsplit("/", 1)[1] for h in hits} <= {"alice.wav", "mixed.wav"}
    assert any(h["path"].endswith("alice.wav") for h in hits)
    mixed = [h for h in hits if h["path"].endswith("mixed.wav")]
    alice_end_in_mixed = 0.5 + len(say(TEXT_A[:1], VOICE_A)) / 16000  # alice speaks first in mixed.wav
    assert all(h["start"] < alice_end_in_mixed for h in mixed)

    one_line_error(invoke("query", "--text", "prince", "--speaker-id", "S99", "--index", index), "no voice 'S99'")
    one_line_error(invoke("speakers", "name", "S99", "x", "--index", index), "no voice 'S99'")


def test_web_api_filters_by_voice(index, voices_dir):
    """GET /api/search takes speaker= (a voice of `awesearch speakers`) or an indexed span as the voice; the
    page's info lists the voices; bad speaker parameters are a 400 with a one-line JSON error."""
    from starlette.testclient import TestClient

    from awesearch.web.app import create_app, open_archive

    assert invoke("speakers", "--index", index).exit_code == 0  # voices exist (named or not)
    archive = open_archive(index)
    bob = next(i for i, p in enumerate(archive.paths) if p.endswith("bob.wav"))
    with TestClient(create_app(archive)) as client:
        info = client.get("/api/info").json()["speakers"]
        assert info["pieces"] and len(info["voices"]) == 2
        r = client.get("/api/search", params={"text": "session", "k": 50, "speaker_file": bob, "speaker_start": 0, "speaker_end": 6})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert hits and all(h["speaker_score"] >= 0.5 and not h["path"].endswith("alice.wav") for h in hits)
        voice = next(v["id"] for v in info["voices"])
        r = client.get("/api/search", params={"text": "session", "k": 50, "speaker": voice})
        assert r.status_code == 200 and all("speaker_score" in h for h in r.json()["hits"])
        for params, message in [
            ({"speaker": "S99"}, "no voice 'S99'"),
            ({"speaker": voice, "speaker_file": bob}, "not both"),
            ({"speaker_start": 0}, "needs speaker_file"),
            ({"speaker_file": bob, "speaker_start": 0.5, "speaker_end": 1.2}, "too short"),
            ({"speaker_file": 99, "speaker_start": 0, "speaker_end": 1}, "no recording"),
        ]:
            r = client.get("/api/search", params={"text": "session", **params})
            assert r.status_code in (400, 404) and r.headers["content-type"] == "application/json", r.text
            body = r.json()
            assert set(body) == {"error"} and "\n" not in body["error"] and message in body["error"], body
        assert client.get("/").status_code == 200 and 'id="voice"' in client.get("/").text


def test_speaker_clip_filters_hits(index, voices_dir):
    plain = json.loads(invoke("query", "--text", "session", "--index", index, "--json", "-k", "50").stdout)
    assert "alice.wav" in {h["path"].rsplit("/", 1)[1] for h in plain}  # so the filter has something to remove
    res = invoke("query", "--text", "session", "--speaker", voices_dir / "bob_clip.wav", "--index", index, "--json", "-k", "50")
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits and {h["path"].rsplit("/", 1)[1] for h in hits} <= {"bob.wav", "mixed.wav"}
    assert all(0.5 <= h["speaker_score"] <= 1 for h in hits)
    # two examples of alice form one prototype; a span of a clip works too
    res = invoke(
        "query", "--text", "prince", "--index", index, "--json", "-k", "50",
        "--speaker", voices_dir / "alice_clip.wav", "--speaker-start", 0.0, "--speaker-end", 3.0,
        "--speaker", voices_dir / "alice_more.wav", "--speaker-start", 0.0, "--speaker-end", 4.0,
    )
    assert res.exit_code == 0, res.output
    paths = {h["path"].rsplit("/", 1)[1] for h in json.loads(res.stdout)}
    assert "alice.wav" in paths and "bob.wav" not in paths
    table = invoke("query", "--text", "prince", "--speaker", voices_dir / "alice_clip.wav", "--index", index)
    assert table.exit_code == 0 and "speaker" in table.stdout
    # query by example, filtered by voice
    res = invoke(
        "query", "--audio", voices_dir / "corpus" / "bob.wav", "--start", 1.0, "--end", 1.6,
        "--speaker", voices_dir / "bob_clip.wav", "--index", index, "--json", "-k", "50",
    )
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits and {h["path"].rsplit("/", 1)[1] for h in hits} <= {"bob.wav", "mixed.wav"}


def test_voice_check_stops_after_max_checks_and_says_so(index, voices_dir, monkeypatch):
    """A filtered search verifies at most MAX_CHECKS pieces (best-ranked hits first); when that bound stops it,
    the CLI says so in one line on stderr and the web API in "notes"; unbounded, there is no note."""
    from starlette.testclient import TestClient

    from awesearch import speaker_verify
    from awesearch.web.app import create_app, open_archive

    args = ("query", "--text", "session", "--speaker", voices_dir / "bob_clip.wav", "--index", index, "--json", "-k", "50")
    full = invoke(*args)
    assert full.exit_code == 0 and "note:" not in full.stderr and len(json.loads(full.stdout)) >= 2
    monkeypatch.setattr(speaker_verify, "MAX_CHECKS", 1)
    capped = invoke(*args)
    assert capped.exit_code == 0, capped.output
    notes = [line for line in capped.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "voice check stopped after" in notes[0] and "(limit 1)" in notes[0]
    assert len(json.loads(capped.stdout)) < len(json.loads(full.stdout))  # only the first batch was verified
    archive = open_archive(index)
    bob = next(i for i, p in enumerate(archive.paths) if p.endswith("bob.wav"))
    with TestClient(create_app(archive)) as client:
        body = client.get("/api/search", params={"text": "session", "k": 50, "speaker_file": bob, "speaker_start": 0, "speaker_end": 6}).json()
        assert len(body["notes"]) == 1 and "(limit 1)" in body["notes"][0]
        assert "notes" not in client.get("/api/search", params={"text": "session", "k": 50}).json()


def test_each_search_of_a_filter_has_its_own_check_budget(index, voices_dir, monkeypatch):
    """--queries and the bench reuse one filter (its piece cache) for many searches: MAX_CHECKS bounds each
    search's new checks, so a search after one that used the whole budget still verifies its hits."""
    from awesearch import speaker_verify
    from awesearch.search import SearchEngine
    from awesearch.speaker_index import open_filter
    from awesearch.speakers import SpeakerExample

    engine = SearchEngine.open(index)

    def run(text):
        return lambda n: engine.search(text=text, k=n, threshold=0.0)

    def bob():
        return open_filter([index], [SpeakerExample(str(voices_dir / "bob_clip.wav"))])

    alone = bob().search(run("prince"), 50)
    shared = bob()
    shared.search(run("session"), 50)
    monkeypatch.setattr(speaker_verify, "MAX_CHECKS", len(shared.judge.p))  # the first search used it all
    assert shared.search(run("prince"), 50) == alone and not shared.stopped


def test_speaker_score_is_the_verifiers(index, voices_dir):
    """A kept hit's speaker_score is the CAM++ verifier's probability of the stored piece holding it, read
    again from the recording, against the example's prototype."""
    from awesearch.audio import load_audio
    from awesearch.speaker_index import load_speaker_data
    from awesearch.speaker_verify import load_verifier
    from awesearch.speakers import SpeakerExample, examples_prototype
    from awesearch.store import IndexStore

    res = invoke("query", "--text", "session", "--speaker", voices_dir / "bob_clip.wav", "--index", index, "--json", "-k", "5")
    assert res.exit_code == 0, res.output
    hit = json.loads(res.stdout)[0]
    data = load_speaker_data(IndexStore.open(index))
    row = data.piece_for(hit["path"], hit["start"], hit["end"])
    v = load_verifier()
    audio = load_audio(hit["path"], data.starts[row], data.ends[row])
    cos = float(v.embed(audio, np.array([[0.0, len(audio) / 16000]]))[0] @ examples_prototype(v, [SpeakerExample(str(voices_dir / "bob_clip.wav"))]))
    assert hit["speaker_score"] == pytest.approx(float(v.probability(cos)), abs=1e-3)


def test_unreadable_recording_is_one_line(voices_dir, tmp_path):
    """A hit whose recording was deleted after indexing cannot be verified: one line, not a silent skip."""
    import shutil

    from awesearch.indexer import index_paths

    (tmp_path / "c").mkdir()
    for name in ("alice.wav", "bob.wav"):
        shutil.copy(voices_dir / "corpus" / name, tmp_path / "c" / name)
    assert index_paths([tmp_path / "c"], tmp_path / "idx", model="random").indexed == 2
    (tmp_path / "c" / "bob.wav").unlink()
    res = invoke("query", "--text", "session", "--speaker", voices_dir / "bob_clip.wav", "--index", tmp_path / "idx", "-k", "50")
    one_line_error(res, "can no longer be read")
    assert "bob.wav" in res.stderr


@pytest.mark.parametrize(
    "clip, message",
    [
        ("silence.wav", "has no speech"),
        ("short.wav", "too short to know the voice"),
        ("broken.wav", "cannot be read"),
        ("missing.wav", "not found"),
    ],
)
def test_bad_speaker_examples(index, voices_dir, clip, message):
    one_line_error(invoke("query", "--text", "prince", "--speaker", voices_dir / clip, "--index", index), message)


def test_bad_speaker_options(index, voices_dir):
    clip = voices_dir / "alice_clip.wav"
    one_line_error(invoke("query", "--text", "x", "--speaker", clip, "--speaker-start", 1.0, "--index", index), "--speaker-end")
    one_line_error(invoke("query", "--text", "x", "--speaker", clip, "--speaker-id", "S1", "--index", index), "not both")
    one_line_error(invoke("query", "--text", "x", "--speaker", clip, "--speaker-start", 2, "--speaker-end", 1, "--index", index), "start < end")


def test_voices_survive_reindexing(tmp_path, voices_dir):
    """Named voices keep their ids and names; new speech of a known voice joins it, a new voice gets a new id."""
    import shutil

    from awesearch.indexer import index_paths

    corpus, idx = tmp_path / "corpus", tmp_path / "idx"
    shutil.copytree(voices_dir / "corpus", corpus)
    (corpus / "mixed.wav").unlink()
    index_paths([corpus], idx, model="random")
    first = {v["sample_path"].rsplit("/", 1)[1]: v for v in json.loads(invoke("speakers", "--index", idx, "--json").stdout)}
    assert set(first) == {"alice.wav", "bob.wav"}
    alice = first["alice.wav"]["id"]
    assert invoke("speakers", "name", alice, "Alice", "--index", idx).exit_code == 0

    shutil.copy(voices_dir / "alice_more.wav", corpus / "alice_more.wav")
    write_audio(corpus / "carol.wav", say(TEXT_A + CLIP_TEXT, VOICE_C))
    index_paths([corpus], idx, model="random")
    after = {v["id"]: v for v in json.loads(invoke("speakers", "--index", idx, "--json").stdout)}
    assert after[alice]["name"] == "Alice" and after[alice]["files"] == 2
    assert first["bob.wav"]["id"] in after and len(after) == 3

    (corpus / "alice.wav").unlink()
    (corpus / "alice_more.wav").unlink()
    index_paths([corpus], idx, model="random")
    gone = {v["id"] for v in json.loads(invoke("speakers", "--index", idx, "--json").stdout)}
    assert alice not in gone and first["bob.wav"]["id"] in gone

    from awesearch.speaker_index import load_speaker_data
    from awesearch.store import IndexStore

    store = IndexStore.open(idx)  # half the speech died: compaction rewrote the speaker tables without it
    assert sum(t.pieces for t in store.manifest.speaker_tables) == len(load_speaker_data(store).starts)
    assert sorted(p.name for p in idx.glob("spk-*.parquet")) == sorted(f"{t.name}.parquet" for t in store.manifest.speaker_tables)


def test_help_texts():
    for args in (["speakers", "--help"], ["speakers", "name", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "--index" in result.stdout
    assert "Interviewer" in invoke("speakers", "--help").stdout
    q = invoke("query", "--help").stdout
    for option in ("--speaker", "--speaker-start", "--speaker-end", "--speaker-id"):
        assert option in q


def test_speaker_filter_in_batch_and_shards(index, voices_dir, tmp_path):
    """--queries and several --index take --speaker; --speaker-id names a voice of one index only."""
    from awesearch.indexer import index_paths

    queries = tmp_path / "q.txt"
    queries.write_text("session\nprince\n")
    res = invoke("query", "--queries", queries, "--speaker", voices_dir / "bob_clip.wav", "--index", index, "--json", "-k", "50")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [d["query"] for d in lines] == ["session", "prince"] and lines[0]["hits"]
    assert all(h["speaker_score"] >= 0.5 and not h["path"].endswith("alice.wav") for d in lines for h in d["hits"])

    shard = tmp_path / "shard"
    (tmp_path / "more").mkdir()
    write_audio(tmp_path / "more" / "alice_more.wav", say(TEXT_B[1:], VOICE_A))
    index_paths([tmp_path / "more"], shard, model="random")
    res = invoke("query", "--text", "session", "--speaker", voices_dir / "alice_clip.wav", "--index", index, "--index", shard, "--json", "-k", "50")
    assert res.exit_code == 0, res.output
    names = {h["path"].rsplit("/", 1)[1] for h in json.loads(res.stdout)}
    assert "alice_more.wav" in names and "bob.wav" not in names  # a hit from each shard's pieces
    one_line_error(invoke("query", "--text", "session", "--speaker-id", "S1", "--index", index, "--index", shard), "one index")


def test_damaged_speaker_table_and_voices_are_repaired(voices_dir, tmp_path):
    """index --verify drops a damaged speaker table and re-embeds exactly the recordings that lost their pieces;
    a damaged voices file is dropped with a note, and `awesearch speakers` finds the voices again."""
    from awesearch.speaker_index import load_speaker_data
    from awesearch.store import IndexStore
    from awesearch.indexer import index_paths

    corpus, idx = voices_dir / "corpus", tmp_path / "idx"
    index_paths([corpus], idx, model="random", commit_interval_s=0.0)  # one commit, so one speaker table, per file
    assert invoke("speakers", "--index", idx).exit_code == 0
    store = IndexStore.open(idx)
    bob = next(f.file_id for f in store.load_files() if f.path.endswith("bob.wav"))
    from awesearch.speaker_index import read_speaker_table

    table = next(t for t in store.manifest.speaker_tables if bob in read_speaker_table(idx, t)[0])
    data = bytearray((idx / f"{table.name}.parquet").read_bytes())
    data[len(data) // 2] ^= 0x40
    (idx / f"{table.name}.parquet").write_bytes(bytes(data))
    assert invoke("check", "--index", idx).exit_code == 1

    res = invoke("index", corpus, "--index", idx, "--model", "random", "--quiet", "--verify")
    assert res.exit_code == 0 and "repaired: 1 recordings" in res.output and "1 indexed, 2 unchanged" in res.output, res.output
    store = IndexStore.open(idx)
    assert store.verify(full=True) == [] and not (idx / f"{table.name}.parquet").exists()
    data = load_speaker_data(store)
    assert sorted(p.rsplit("/", 1)[1] for p in data.by_path) == ["alice.wav", "bob.wav", "mixed.wav"]

    voices = idx / store.manifest.speaker_voices
    voices.write_text(voices.read_text()[:-20])
    res = invoke("index", corpus, "--index", idx, "--model", "random", "--quiet", "--verify")
    assert res.exit_code == 0 and "voices file" in res.output and "0 indexed, 3 unchanged" in res.output, res.output
    assert IndexStore.open(idx).manifest.speaker_voices is None
    listed = invoke("speakers", "--index", idx, "--json")
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)) == 2
