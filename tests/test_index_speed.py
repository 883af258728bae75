"""Issue 9's indexing paths give the sequential path's index: speech islands, packing across files, --jobs,
--device. With the random (log-mel) encoder every span is encoded on its own, so those must match exactly;
with the Whisper front end packing shares attention context, and the stated tolerance is tested."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from awesearch.audio import SAMPLE_RATE, AudioChunk
from awesearch.errors import AwesearchError
from helpers import speech, write_audio
from awesearch.indexer import embed, index_paths, workers
from test_indexer import rows_and_vectors


def test_islands_leave_out_long_silences_and_keep_context():
    chunk = AudioChunk(start=56.0, samples=np.zeros(68 * SAMPLE_RATE, np.float32), core_start=60.0, core_end=120.0)
    w = np.array([[4.0, 5.0], [4.5, 6.5], [6.8, 7.5], [20.0, 21.0], [20.2, 22.0], [66.0, 67.9]])  # from chunk.start
    spans = embed.island_spans(7, chunk, w, margin_s=1.0, skip_gap_s=4.0)
    assert len(spans) == 3  # 7.5 -> 20.0 and 22.0 -> 66.0 are silences longer than 4 s
    assert sum(len(s.samples) for s in spans) / SAMPLE_RATE < 0.4 * 68
    got = []
    for s in spans:
        lo = s.start - chunk.start
        assert lo == int(lo) and len(s.samples) / SAMPLE_RATE % embed.ENCODE_QUANTUM_S == 0 or lo + len(s.samples) / SAMPLE_RATE == 68
        assert (s.windows[:, 0] >= 1.0 - 1e-9).all() or lo == 0  # a margin of context before every window
        assert (s.windows[:, 1] <= len(s.samples) / SAMPLE_RATE - 1.0 + 1e-9).all() or lo + len(s.samples) / SAMPLE_RATE == 68
        got.append(s.windows + lo)
        assert s.key == 7 and s.core == (60.0, 120.0)
    np.testing.assert_allclose(np.concatenate(got), w)  # every window once, in order


def test_one_island_when_speech_is_continuous():
    chunk = AudioChunk(start=0.0, samples=np.zeros(20 * SAMPLE_RATE, np.float32), core_start=0.0, core_end=20.0)
    w = np.stack([np.arange(0.0, 18.0, 0.5), np.arange(0.0, 18.0, 0.5) + 1.5], axis=1)
    (span,) = embed.island_spans(0, chunk, w, margin_s=1.0, skip_gap_s=4.0)
    assert span.start == 0.0 and len(span.samples) == 20 * SAMPLE_RATE


@pytest.fixture
def gappy(tmp_path, speech_clips):
    """Short files plus one with 20 s of silence between two sentences."""
    root = tmp_path / "gappy"
    for i, (audio, _) in enumerate(speech_clips):
        write_audio(root / f"s{i}.wav", audio)
    silence = np.random.default_rng(0).normal(0, 1e-4, 20 * SAMPLE_RATE).astype(np.float32)
    write_audio(root / "long.wav", np.concatenate([speech_clips[0][0], silence, speech_clips[1][0]]))
    return root


def test_packed_and_island_index_equals_the_sequential_one(gappy, tmp_path, monkeypatch):
    encoded = []
    original = embed._Packer.flush

    def spy(self):
        encoded.extend(len(s.samples) / SAMPLE_RATE for s in self.items if isinstance(s, embed.Span))
        return original(self)

    monkeypatch.setattr(embed._Packer, "flush", spy)
    monkeypatch.setattr(embed, "SPECULATE_FIRST_CHUNK", False)  # it encodes the first chunk whole (tested below)
    packed = index_paths([gappy], tmp_path / "packed", model="random")
    packed_s = sum(encoded)
    monkeypatch.setattr(embed, "PACK_FLUSH_S", 0.0)
    monkeypatch.setattr(embed, "SKIP_GAP_S", 1e9)
    encoded.clear()
    sequential = index_paths([gappy], tmp_path / "sequential", model="random")
    assert packed.windows == sequential.windows > 100
    assert packed_s < sum(encoded) - 15  # the 20 s silence (less the margins) was not encoded
    a, b = rows_and_vectors(tmp_path / "packed"), rows_and_vectors(tmp_path / "sequential")
    assert set(a) == set(b)
    for k in a:  # equal up to float rounding (the cumulative sum runs over spans of other lengths), which int8
        # storage can turn into one code step (max |x| / 127)
        np.testing.assert_allclose(a[k], b[k], atol=np.abs(b[k]).max() / 127 + 1e-3)


def test_first_chunk_encoded_before_its_vad_gives_the_same_index(gappy, tmp_path, monkeypatch):
    """The run's first chunk (here the whole of long.wav, silence included) is encoded before its VAD has run;
    its windows, filled in later, equal the island path's (the random encoder's frames are local)."""
    whole = []
    original = embed.fill_speculative

    def spy(span, chunk, w, margin_s):
        assert span.windows is None and not span.ready.is_set()  # encoded, or at least queued, without them
        whole.append(len(span.samples) == len(chunk.samples))
        return original(span, chunk, w, margin_s)

    monkeypatch.setattr(embed, "fill_speculative", spy)
    monkeypatch.setattr(embed, "SPECULATE_MAX_S", 40.0)  # long.wav (~30 s) is one speculated chunk
    first = index_paths([gappy], tmp_path / "speculative", model="random")
    assert whole == [True]  # exactly one speculative span, the whole first chunk
    monkeypatch.setattr(embed, "SPECULATE_FIRST_CHUNK", False)
    islands = index_paths([gappy], tmp_path / "islands", model="random")
    assert first.windows == islands.windows > 100
    a, b = rows_and_vectors(tmp_path / "speculative"), rows_and_vectors(tmp_path / "islands")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=np.abs(b[k]).max() / 127 + 1e-3)


def test_a_file_failing_after_its_speculative_chunk_was_encoded_is_skipped(gappy, tmp_path, monkeypatch):
    """The first file's first chunk is encoded before its VAD; when that file then fails to decode, its span is
    dropped from the batch already flushed and every other file is indexed (nothing hangs or leaks)."""
    from awesearch.errors import AudioDecodeError

    real = embed.iter_chunks

    def failing(path, chunk_s, overlap_s):
        for i, chunk in enumerate(real(path, chunk_s, overlap_s)):
            yield chunk
            if path.endswith("long.wav") and i == 0:
                raise AudioDecodeError(f"{path}: corrupt frame after the first chunk")

    from awesearch.encoder import Encoder

    in_flight = []
    failed = threading.Event()  # the first batch's encoding waits for the failure, so it is surely in flight then
    real_fail, real_encode = embed._Packer.fail, Encoder.encode_many_frames_and_inputs

    def fail(self, key):
        in_flight.append(any(isinstance(i, embed.Span) and i.key == key for b in self.batches for i in b.items))
        failed.set()
        return real_fail(self, key)

    def encode(self, audios):
        failed.wait(timeout=60)
        return real_encode(self, audios)

    monkeypatch.setattr(Encoder, "encode_many_frames_and_inputs", encode)

    monkeypatch.setattr(embed, "iter_chunks", failing)
    monkeypatch.setattr(embed, "CHUNK_S", 12.0)  # long.wav (~25 s) has a second chunk to fail in
    monkeypatch.setattr(embed, "LONG_SPAN_S", 10.0)  # its 20 s first chunk is flushed at once
    monkeypatch.setattr(embed._Packer, "fail", fail)
    report = index_paths([gappy], tmp_path / "idx", model="random")
    assert in_flight == [True]  # the failure came while its speculative span was flushed (encoding or encoded)
    assert report.indexed == 3 and [s.reason for s in report.skipped] == ["corrupt frame after the first chunk"]
    paths = {k[0] for k in rows_and_vectors(tmp_path / "idx")}
    assert len(paths) == 3 and not any(p.endswith("long.wav") for p in paths)


def test_a_first_chunk_longer_than_one_block_is_not_speculated(gappy, tmp_path, monkeypatch):
    """Only a first chunk of at most SPECULATE_MAX_S is encoded before its VAD (silence in it costs at most one
    block); a longer one waits for its VAD like every other chunk, and the prefetch encodes its islands (what
    the stream encodes first), not the whole chunk."""
    calls, original = [], embed.fill_speculative
    monkeypatch.setattr(embed, "fill_speculative", lambda *a: calls.append(a) or original(*a))
    monkeypatch.setattr(embed, "SPECULATE_MAX_S", 5.0)  # long.wav's ~25 s chunk is now "long"
    report = index_paths([gappy], tmp_path / "idx", model="random")
    assert report.indexed == 4 and calls == []
    first = embed.FirstSpans(str(gappy / "long.wav"), True, 0.02, embed.SPAN_MARGIN_S)
    spans = first()  # long.wav alone is one chunk, all of the run: its island spans
    chunk, regions = first.vad
    w, _ = embed.chunk_windows(chunk, 0.02, regions)
    assert [len(s) for s in spans] == [len(s.samples) for s in embed.island_spans(0, chunk, w, embed.SPAN_MARGIN_S)]
    assert len(spans) == 2 and sum(map(len, spans)) < len(chunk.samples) - 15 * SAMPLE_RATE  # the pause is not encoded
    assert embed.FirstSpans(str(gappy / "long.wav"), False, 0.02, embed.SPAN_MARGIN_S)() is None  # packed with other files


@pytest.mark.slow
def test_prefetched_first_spans_are_used_once_and_change_nothing(gappy, tmp_path, monkeypatch):
    """A new index with the default model encodes its first spans while torch is imported (FirstSpans +
    WhisperFrontend.prefetch); the stream takes those frames instead of encoding them again, reuses their VAD,
    and the index equals one built without the prefetch."""
    from awesearch.whisper_frontend import WhisperFrontend, whisper_available

    if not whisper_available():
        pytest.skip("the Whisper front end is not installed")
    monkeypatch.setattr(embed, "VAD_BATCH_S", 10.0)  # long.wav's ~30 s chunk is a VAD batch of its own...
    monkeypatch.setattr(embed, "SPECULATE_MAX_S", 5.0)  # ...and not speculated: its islands are the first flush
    blocks, vad_s, prefetched = [], [], []
    real_blocks, real_vad, real_prefetch = WhisperFrontend._encode_blocks, embed.speech_regions_many, WhisperFrontend.prefetch
    monkeypatch.setattr(WhisperFrontend, "_encode_blocks", lambda self, b: blocks.append(len(b)) or real_blocks(self, b))
    monkeypatch.setattr(embed, "speech_regions_many", lambda audios: vad_s.extend(len(a) / SAMPLE_RATE for a in audios) or real_vad(audios))
    monkeypatch.setattr(WhisperFrontend, "prefetch", lambda self, clips: prefetched.append(len(clips)) or real_prefetch(self, clips))
    files = [gappy / "long.wav", gappy / "s0.wav"]
    index_paths(files, tmp_path / "prefetch", phonetic=False, speakers=False)
    assert prefetched == [2]  # long.wav's two islands
    first = (sum(blocks), sum(vad_s))
    blocks.clear(), vad_s.clear()
    monkeypatch.setattr(embed.FirstSpans, "__call__", lambda self: None)
    index_paths(files, tmp_path / "stream", phonetic=False, speakers=False)
    assert prefetched == [2] and first == (sum(blocks), sum(vad_s))  # no block encoded, no VAD run, twice
    a, b = rows_and_vectors(tmp_path / "prefetch"), rows_and_vectors(tmp_path / "stream")
    assert set(a) == set(b) and len(a) > 50
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_default_span_grid_is_the_default_encoders():
    """The prefetch cuts spans before the encoder is loaded, on pipeline.default_span_grid(): it must be the
    default encoder's frame grid and the stream's span margin (else the prefetched spans would never match)."""
    from awesearch.encoder import load_encoder
    from awesearch.indexer.pipeline import default_span_grid

    encoder = load_encoder(None)
    assert default_span_grid() == (1.0 / encoder.frame_rate, max(embed.SPAN_MARGIN_S, float(encoder.context_s)))


def test_the_encoder_starts_on_the_first_vad_batch(gappy, tmp_path, monkeypatch):
    """The first flush holds the spans of the first VAD batch only (the analysis thread's ("flush",)); later
    spans queue by the PACK_FLUSH_S rule, so the encoder does not wait for 120 s of speech to start."""
    flushes = []
    original = embed._Packer.flush

    def spy(self):
        keys = sorted({s.key for s in self.items if isinstance(s, embed.Span)})
        if keys:
            flushes.append(keys)
        return original(self)

    monkeypatch.setattr(embed._Packer, "flush", spy)
    monkeypatch.setattr(embed, "SPECULATE_FIRST_CHUNK", False)
    monkeypatch.setattr(embed, "VAD_BATCH_S", 1.0)  # every chunk is a VAD batch of its own
    report = index_paths([gappy], tmp_path / "idx", model="random")
    assert report.indexed == 4 and flushes == [[0], [1, 2, 3]]  # long.wav first, then the rest (< 120 s) at the end


def test_indexing_runs_numpy_blas_on_one_thread_and_restores_it(gappy, tmp_path, monkeypatch):
    """A second BLAS thread spins on the core the encoder needs (pipeline.BLAS_THREADS): index_paths runs numpy's
    BLAS on one thread, VAD and mel included, and gives the process its setting back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from awesearch.indexer import pipeline

    import numpy  # noqa: F401 - its BLAS is loaded (libraries loaded later are not limited)

    # process-wide BLAS pools (numpy's pthreads OpenBLAS); an OpenMP-threaded one (faiss's) is limited per thread
    loaded = {i["filepath"] for i in threadpool_info() if i["user_api"] == "blas" and i.get("threading_layer") != "openmp"}
    blas = lambda: {i["num_threads"] for i in threadpool_info() if i["filepath"] in loaded}  # noqa: E731
    seen, real = [], embed.speech_regions_many
    monkeypatch.setattr(embed, "speech_regions_many", lambda audios: seen.append(blas()) or real(audios))
    with threadpool_limits(limits=2, user_api="blas"):
        index_paths([gappy], tmp_path / "idx", model="random")
        assert seen and all(s == {pipeline.BLAS_THREADS} for s in seen)
        assert blas() == {2}


def test_speculative_span_keeps_phonetic_codes_inside_islands_only():
    chunk = AudioChunk(start=100.0, samples=np.zeros(40 * SAMPLE_RATE, np.float32), core_start=104.0, core_end=136.0)
    w = np.array([[10.0, 11.0], [2.0, 3.0], [30.0, 31.0]])  # from chunk.start, unsorted
    span = embed.Span(3, chunk.start, chunk.samples, None, (chunk.core_start, chunk.core_end), ready=threading.Event())
    embed.fill_speculative(span, chunk, w, margin_s=1.0)
    assert span.ready.is_set() and span.windows[:, 0].tolist() == [2.0, 10.0, 30.0]
    cut = embed.island_spans(3, chunk, w, margin_s=1.0)
    expect = [(max(104.0, c.start), min(136.0, c.start + len(c.samples) / SAMPLE_RATE)) for c in cut]
    assert span.keep == expect and len(expect) == 3 and expect[0][0] == 104.0  # clipped to the core
    none = embed.Span(3, chunk.start, chunk.samples, None, (104.0, 136.0), ready=threading.Event())
    embed.fill_speculative(none, chunk, np.zeros((0, 2)), margin_s=1.0)
    assert none.keep == [] and len(none.windows) == 0 and none.is_ready()


@pytest.mark.slow
def test_jobs_2_index_equals_jobs_1(gappy, tmp_path):
    one = index_paths([gappy], tmp_path / "one", model="random", jobs=1)
    two = index_paths([gappy], tmp_path / "two", model="random", jobs=2)
    assert (two.indexed, two.windows, two.audio_s) == (one.indexed, one.windows, pytest.approx(one.audio_s))
    a, b = rows_and_vectors(tmp_path / "one"), rows_and_vectors(tmp_path / "two")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_device_auto_is_cpu_without_a_gpu_and_cuda_is_refused(monkeypatch, corpus, tmp_path):
    monkeypatch.setattr(workers, "cuda_devices", lambda: 0)
    assert workers.resolve_device("auto") == "cpu" and workers.resolve_device("cpu") == "cpu"
    with pytest.raises(AwesearchError, match="no CUDA GPU") as e:
        index_paths([corpus], tmp_path / "idx", model="random", device="cuda")
    assert "\n" not in str(e.value) and not (tmp_path / "idx").exists()  # refused before touching the index
    with pytest.raises(AwesearchError, match="--device must be one of"):
        workers.resolve_device("tpu")
    with pytest.raises(AwesearchError, match="--jobs must be between"):
        index_paths([corpus], tmp_path / "idx", model="random", jobs=0)
    monkeypatch.setattr(workers, "cuda_devices", lambda: 1)
    assert workers.resolve_device("auto") == "cuda"


def test_cli_cuda_without_gpu_is_one_line(monkeypatch, corpus, tmp_path):
    from typer.testing import CliRunner

    from awesearch.cli import app

    monkeypatch.setattr(workers, "cuda_devices", lambda: 0)
    result = CliRunner().invoke(app, ["index", str(corpus), "--index", str(tmp_path / "idx"), "--model", "random", "--device", "cuda", "-q"])
    assert result.exit_code == 1
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]


@pytest.mark.slow
def test_whisper_packing_changes_vectors_within_the_stated_tolerance(tmp_path, speech_clips):
    """Packed spans share 30 s blocks, so Whisper's attention sees other clips: indexer/embed.py states what
    that costs in vector agreement (PACK_MEAN_COSINE, PACK_P5_COSINE); search quality on real speech is
    benchmarks/pack_quality.py."""
    from awesearch.whisper_frontend import whisper_available

    if not whisper_available():
        pytest.skip("the Whisper front end is not installed")
    root = tmp_path / "w"
    for i, (audio, _) in enumerate(speech_clips):
        write_audio(root / f"s{i}.wav", audio)
    index_paths([root], tmp_path / "packed", phonetic=False)
    index_paths([root], tmp_path / "alone", phonetic=False, pack=False)
    a, b = rows_and_vectors(tmp_path / "packed"), rows_and_vectors(tmp_path / "alone")
    assert set(a) == set(b)
    cos = np.array([float(a[k] @ b[k]) / float(np.linalg.norm(a[k]) * np.linalg.norm(b[k])) for k in a])
    assert cos.mean() >= embed.PACK_MEAN_COSINE and np.percentile(cos, 5) >= embed.PACK_P5_COSINE
    assert cos.min() < 0.9999  # packing really did put the clips together (else this test proves nothing)



def test_batched_vad_of_many_clips_equals_each_clip_alone(speech_clips):
    from awesearch import vad

    clips = [c[0] for c in speech_clips] + [np.zeros(0, np.float32), speech_clips[0][0][:8000]]
    many = vad.speech_probabilities_many(clips)
    for clip, probs in zip(clips, many):
        np.testing.assert_allclose(probs, vad.speech_probabilities(clip), atol=1e-5)
    assert vad.speech_regions_many(clips) == [vad.speech_regions(c) if len(c) else [] for c in clips]
    assert any(len(r) for r in vad.speech_regions_many(clips))


def test_index_help_lists_the_speed_options():
    from typer.testing import CliRunner

    from awesearch.cli import app

    out = CliRunner().invoke(app, ["index", "--help"], env={"COLUMNS": "200"}).output
    for word in ("--jobs", "--device", "--no-pack", "auto"):
        assert word in out


def test_events_come_one_file_at_a_time_in_input_order():
    """Spans of several files are encoded together; the writer still gets each file's events before the next
    file's (its commit after a FileDone then holds that file's windows only), and a failed file releases the rest."""
    packer = embed._Packer(encoder=None, phone=None, pack=True)
    for key in (0, 1, 2):
        packer.start(key, None)
    w = {k: embed.Windows(k, np.zeros((1, 2), np.float32), np.zeros(1), np.ones(1)) for k in (0, 1, 2)}
    done = {k: embed.FileDone(k, 1.0, 1.0, 1, None) for k in (0, 1, 2)}
    assert list(packer._release([w[1], w[0], w[2], done[1]])) == [w[0]]
    assert list(packer._release([done[0]])) == [done[0], w[1], done[1], w[2]]
    assert list(packer.fail(2)) == [] and packer.order == [] and not packer.held
    for key in (3, 4):
        packer.start(key, None)
    w4 = embed.Windows(4, w[0].vectors, w[0].starts, w[0].ends)
    assert list(packer._release([w4])) == []  # behind file 3
    assert list(packer.fail(3)) == [w4]
