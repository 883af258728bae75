"""Speaker-aware search on real speech: verification EER, speaker-filtered search, clustering, and cost.

    python benchmarks/speakers_bench.py --out-json benchmarks/results/speakers_two_stage.json --out-md benchmarks/results/speakers_two_stage.md

One index of ../shared/eval/real (read in place, never copied; the index goes to a temporary directory)
is built with speaker embeddings, and every figure comes from what that index stores:
1. verification: all pairs of stored speech pieces of at least MIN_EER_S seconds; a pair is a target when
   both clips carry the same `speaker` label of manifest.tsv. EER over all pairs, over pairs from different
   recordings, and without the labels whose identity the set's README calls unknown; by the query-time
   verifier's (CAM++) embeddings of the pieces read again from their recordings (the figure), and by the
   stored LSTM embeddings (the first stage, beside it).
2. filtered search (top TOP, no score threshold): each word of >= 4 phonemes spoken by at least two
   labelled voices, searched by text for each voice that says it, with that voice's longest other recording
   as the --speaker example (voices whose recordings hold under 1 s of continuous speech cannot give one and
   are left out). Each hit is judged as `query --speaker` judges it (the verifier's probability of the stored
   piece holding it against the example's verifier prototype; a fresh piece cache per query). Beside the
   precision and recall: the verifier's cost, ms of wall time per piece verified (reading, filterbank,
   network), and a filtered query's wall time against the same query unfiltered (medians).
   Of the returned hits that are true occurrences of the word, the share by the requested voice (precision), and the share
   of that voice's occurrences returned (recall); beside them the recall of the same search unfiltered.
3. clustering: `awesearch speakers` clustering of all stored pieces; purity (speech of each voice from its
   main label) and coverage (speech of each label in its main voice), weighted by seconds of speech;
   unassigned speech counts as pure and uncovered.
4. cost: the same archive (and a generated long-form recording) indexed with and without speakers in the
   same run, alternated (best of each; the long-form --cost-repeats times, the real set --real-cost-repeats
   times): the wall-time ratio, the CPU-time ratio (less sensitive to a loaded machine), and speaker-table
   bytes per hour of audio.
Nothing here is tuned on the real set: the speaker model's calibration comes from synthetic voices only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

REAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "real"
MIN_EER_S = 2.0  # seconds: verification segments are at least this long
MIN_PHONEMES = 4
TOP = 10  # hits per filtered search
THRESHOLD = 0.0  # the engine's score threshold in the filtered search: none, so the figure is the speaker filter's
TOLERANCE_S = 0.5  # a hit must overlap a true occurrence widened by this much
UNKNOWN_IDENTITY = ("cv_unknown", "arctic_unknown", "sb_example", "cmu_cards", "cmu_goforward", "cmu_digits")


def equal_error_rate(scores: np.ndarray, target: np.ndarray) -> float:
    from awesearch.metrics import auc_eer

    return auc_eer(scores[target], scores[~target])[1]


def long_pieces(data) -> np.ndarray:
    return np.flatnonzero(data.ends - data.starts >= MIN_EER_S - 1e-9)


def verifier_embeddings(data, rows: np.ndarray) -> np.ndarray:
    """The query-time verifier's unit embeddings of stored pieces, read from their recordings."""
    from awesearch.speaker_verify import PieceJudge, load_verifier

    v = load_verifier()
    judge = PieceJudge(v, data, np.zeros(v.dims.embedding, np.float32))
    return np.concatenate([v.embed_crops(judge.crops(rows[i : i + 32])) for i in range(0, len(rows), 32)])


def verification(data, label_of: dict[str, str], file_of: dict[str, str], emb: np.ndarray | None = None) -> dict:
    """EERs of the pieces >= MIN_EER_S (emb: their embeddings in long_pieces order; default the stored ones)."""
    keep = long_pieces(data)
    paths = [data.paths[int(data.file_idx[i])] for i in keep]
    labels = np.array([label_of[p] for p in paths])
    files = np.array([file_of[p] for p in paths])
    emb = data.emb[keep] if emb is None else emb
    sims = emb @ emb.T
    iu = np.triu_indices(len(keep), 1)
    s, same, cross = sims[iu], (labels[:, None] == labels[None, :])[iu], (files[:, None] != files[None, :])[iu]
    known = np.array([not l.startswith(UNKNOWN_IDENTITY) for l in labels])
    kk = (known[:, None] & known[None, :])[iu]
    return {
        "segments": int(len(keep)),
        "labels": int(len(set(labels))),
        "target_pairs": int(same.sum()),
        "nontarget_pairs": int((~same).sum()),
        "eer_all_pairs": equal_error_rate(s, same),
        "eer_cross_recording": equal_error_rate(s[cross], same[cross]),
        "eer_known_identity": equal_error_rate(s[kk], same[kk]),
    }


def _overlaps(hit, occ) -> bool:
    return hit.start < occ[2] + TOLERANCE_S and hit.end > occ[1] - TOLERANCE_S


def filtered_search(index_dir: Path, archive, data, threshold: float | None) -> dict:
    from awesearch.errors import QueryError
    from awesearch.search import SearchEngine
    from awesearch.speaker_index import SpeakerFilter
    from awesearch.speaker_verify import PieceJudge, load_verifier
    from awesearch.speakers import SpeakerExample, examples_prototype
    from awesearch.text import word_phonemes

    engine = SearchEngine.open(index_dir)
    verifier = load_verifier()
    prototypes: dict[str, np.ndarray | None] = {}  # example file id -> prototype (None: no usable example)
    timing = {"filtered_s": [], "plain_s": [], "verify_s": 0.0, "pieces": 0}

    def prototype_of(fid: str) -> np.ndarray | None:
        if fid not in prototypes:
            try:
                prototypes[fid] = examples_prototype(verifier, [SpeakerExample(str(archive.files[fid]))])
            except QueryError:
                prototypes[fid] = None  # under 1 s of continuous speech: no example can be given
        return prototypes[fid]

    speech_of = defaultdict(float)  # file id -> seconds of stored pieces
    id_of = archive.path_to_id()
    for i in range(len(data.starts)):
        speech_of[id_of[data.paths[int(data.file_idx[i])]]] += float(data.ends[i] - data.starts[i])
    files_of = defaultdict(list)
    for fid, spk in archive.speakers.items():
        files_of[spk].append(fid)
    occ = defaultdict(list)  # word -> [(file id, start, end)]
    for fid, words in archive.truth.items():
        for w, s, e in words:
            occ[w].append((fid, s, e))
    rows = []
    for word, places in sorted(occ.items()):
        voices = {archive.speakers[f] for f, _, _ in places}
        if len(word_phonemes(word)) < MIN_PHONEMES or len(voices) < 2:
            continue
        for voice in sorted(voices):
            mine = [p for p in places if archive.speakers[p[0]] == voice]
            others = [f for f in files_of[voice] if f not in {p[0] for p in mine}] or [f for f in files_of[voice] if f != mine[0][0]]
            if not others:
                continue
            example = max(others, key=lambda f: speech_of[f])
            if prototype_of(example) is None:
                continue
            filt = SpeakerFilter(PieceJudge(verifier, data, prototype_of(example)))
            run_s = [0.0]

            def run(k: int, word=word, run_s=run_s):
                t = time.perf_counter()
                out = engine.search(text=word, k=k, threshold=threshold)
                run_s[0] += time.perf_counter() - t
                return out

            t = time.perf_counter()
            hits = filt.search(run, TOP)
            timing["filtered_s"].append(time.perf_counter() - t)
            timing["verify_s"] += timing["filtered_s"][-1] - run_s[0]
            timing["pieces"] += len(filt.judge.p)
            t = time.perf_counter()
            plain = engine.search(text=word, k=TOP, threshold=threshold)
            timing["plain_s"].append(time.perf_counter() - t)
            correct = [(h, next((p for p in places if p[0] == id_of[h.path] and _overlaps(h, p)), None)) for h in hits]
            correct = [(h, p) for h, p in correct if p is not None]
            found = {p for _, p in correct if archive.speakers[p[0]] == voice}
            plain_found = {p for p in mine for h in plain if id_of[h.path] == p[0] and _overlaps(h, p)}
            rows.append(
                {
                    "word": word, "voice": voice, "example": example, "occurrences": len(mine), "voices_saying_it": len(voices),
                    "correct_returned": len(correct), "correct_by_voice": sum(1 for _, p in correct if archive.speakers[p[0]] == voice),
                    "found": len(found), "found_unfiltered": len(plain_found),
                }
            )
    n_correct = sum(r["correct_returned"] for r in rows)
    n_occ = sum(r["occurrences"] for r in rows)
    return {
        "queries": len(rows),
        "words": len({r["word"] for r in rows}),
        "precision_by_voice": sum(r["correct_by_voice"] for r in rows) / max(n_correct, 1),
        "recall_of_voice": sum(r["found"] for r in rows) / max(n_occ, 1),
        "recall_unfiltered_same_k": sum(r["found_unfiltered"] for r in rows) / max(n_occ, 1),
        "occurrences": n_occ,
        "correct_hits_returned": n_correct,
        "verify_ms_per_piece": 1000 * timing["verify_s"] / max(timing["pieces"], 1),
        "pieces_verified_per_query": timing["pieces"] / max(len(rows), 1),
        "filtered_query_median_s": float(np.median(timing["filtered_s"])),
        "plain_query_median_s": float(np.median(timing["plain_s"])),
        "rows": rows,
    }


def clustering(data, label_of: dict[str, str]) -> dict:
    from awesearch.speaker_index import assign, cluster_voices
    from awesearch.speakers import load_speaker_model

    model = load_speaker_model()
    voices = cluster_voices(model, data, None)
    member, _ = assign(model, data.with_context(model).context, voices)
    dur = data.ends - data.starts
    labels = np.array([label_of[data.paths[int(i)]] for i in data.file_idx])
    table = defaultdict(lambda: defaultdict(float))  # cluster -> label -> seconds
    for m, l, d in zip(member, labels, dur):
        table[int(m)][l] += float(d)
    total = float(dur.sum())
    unassigned = sum(table[-1].values()) if -1 in table else 0.0
    pure = sum(max(v.values()) for c, v in table.items() if c >= 0) + unassigned
    by_label = defaultdict(lambda: defaultdict(float))
    for c, v in table.items():
        for l, d in v.items():
            by_label[l][c] += d
    covered = sum(max([d for c, d in v.items() if c >= 0], default=0.0) for v in by_label.values())
    return {
        "voices": len(voices.voices),
        "labels": int(len(set(labels))),
        "purity": pure / total,
        "coverage": covered / total,
        "unassigned_share": unassigned / total,
        "pieces": int(len(dur)),
        "speech_s": total,
    }


def index_timed(paths: list[str], index_dir: Path, speakers: bool) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds of all threads, audio seconds, speaker-table bytes) of indexing paths into a
    fresh index_dir."""
    from awesearch.indexer import index_paths

    shutil.rmtree(index_dir, ignore_errors=True)
    t, cpu = time.monotonic(), time.process_time()
    report = index_paths(paths, index_dir, speakers=speakers)
    wall, cpu = time.monotonic() - t, time.process_time() - cpu
    size = sum(p.stat().st_size for p in index_dir.glob("spk-*.parquet"))
    return wall, cpu, report.audio_s, size


def cost(name: str, paths: list[str], work: Path, repeats: int) -> dict:
    """Indexing with and without speakers, alternated `repeats` times (the machine's load drifts); best of each."""
    with_s, without, cpu_with, cpu_without, sizes, audio = [], [], [], [], [], 0.0
    for _ in range(repeats):
        w, c, audio, _ = index_timed(paths, work / f"cost-{name}-plain", speakers=False)
        without.append(w)
        cpu_without.append(c)
        w, c, audio, size = index_timed(paths, work / f"cost-{name}-spk", speakers=True)
        with_s.append(w)
        cpu_with.append(c)
        sizes.append(size)
    return {
        "archive": name,
        "audio_s": audio,
        "walls_without_s": without,
        "walls_with_s": with_s,
        "wall_without_s": min(without),
        "wall_with_s": min(with_s),
        "time_ratio": min(with_s) / min(without),
        "cpu_ratio": min(cpu_with) / min(cpu_without),
        "speaker_bytes_per_audio_hour": sizes[-1] / (audio / 3600),
    }


def markdown(res: dict) -> str:
    v, f, c = res["verification"], res["filtered_search"], res["clustering"]
    lines = [
        "# Speakers on the real set (two stages)",
        "",
        f"Indexing and clustering: Resemblyzer GE2E voice encoder (`{res['speaker_model']}`, LSTM in "
        f"{'bfloat16' if res.get('bfloat16_lstm') else 'float32'}); query-time verifier: `{res['verifier']}` (CAM++ int8). "
        "Both calibrations fitted on synthetic voices only. Load average (2 cores) at start / end: "
        f"{res.get('load_average_start', float('nan')):.1f} / {res.get('load_average_end', float('nan')):.1f}.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| verification EER, pieces >= {MIN_EER_S:.0f} s, all pairs ({v['segments']} pieces, {v['labels']} labels), verifier | {v['eer_all_pairs']:.3f} | <= 0.05 |",
        f"| verification EER, pairs from different recordings, verifier | {v['eer_cross_recording']:.3f} | |",
        f"| verification EER, labels of known identity only, verifier | {v['eer_known_identity']:.3f} | |",
        f"| (the same, stored LSTM pieces: all pairs / different recordings) | {res['verification_lstm']['eer_all_pairs']:.3f} / "
        f"{res['verification_lstm']['eer_cross_recording']:.3f} | |",
        f"| filtered search: correct hits by the requested voice ({f['queries']} queries, {f['words']} words) | {f['precision_by_voice']:.3f} | >= 0.9 |",
        f"| filtered search: the voice's occurrences returned (top {TOP}, score threshold {f['threshold']}) | {f['recall_of_voice']:.3f} | >= 0.7 |",
        f"| (the same searches unfiltered: the voice's occurrences returned) | {f['recall_unfiltered_same_k']:.3f} | |",
        f"| verifier cost: ms (wall) per piece verified, read + filterbank + CAM++; pieces per query | {f['verify_ms_per_piece']:.1f}; "
        f"{f['pieces_verified_per_query']:.1f} | |",
        f"| filtered query wall time, median (the same query unfiltered) | {f['filtered_query_median_s']:.2f} s "
        f"({f['plain_query_median_s']:.3f} s) | |",
        f"| clustering purity ({c['voices']} voices for {c['labels']} labels) | {c['purity']:.3f} | >= 0.9 |",
        f"| clustering coverage (speech in no voice: {c['unassigned_share']:.3f}) | {c['coverage']:.3f} | >= 0.9 |",
    ]
    for k in res.get("cost", []):
        lines.append(
            f"| indexing time with / without speakers, {k['archive']} ({k['audio_s'] / 60:.1f} min, best of {len(k['walls_with_s'])}) | "
            f"{k['time_ratio']:.3f} ({k['wall_with_s']:.1f} / {k['wall_without_s']:.1f} s); CPU time {k['cpu_ratio']:.3f} | <= 1.10 |"
        )
        lines.append(f"| speaker table bytes per audio hour, {k['archive']} | {k['speaker_bytes_per_audio_hour'] / 1e6:.2f} MB | <= 1 MB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--cost-minutes", type=float, default=5.0, help="minutes of generated long-form speech for the cost figure (0: skip)")
    ap.add_argument("--skip-real-cost", action="store_true", help="do not index the real set again for the cost figure")
    ap.add_argument("--cost-repeats", type=int, default=4, help="alternations of indexing the long-form recording without / with speakers (best of each)")
    ap.add_argument("--real-cost-repeats", type=int, default=1, help="the same for the real set (each takes minutes)")
    ap.add_argument("--threshold", type=float, default=THRESHOLD, help="the engine's score threshold in the filtered search (default: none)")
    ap.add_argument("--out-json", type=Path)
    ap.add_argument("--out-md", type=Path)
    args = ap.parse_args()

    from bench_archive import real_archive
    from index_speed import write_recording

    from awesearch.speaker_index import load_speaker_data
    from awesearch.speakers import load_speaker_model
    from awesearch.store import IndexStore
    from awesearch.indexer import index_paths

    archive = real_archive(args.real)
    work = args.work or Path(tempfile.mkdtemp(prefix="awe-speakers-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        index_dir = work / "real-index"
        if not (index_dir / "manifest.json").exists():
            index_paths([str(p) for p in archive.files.values()], index_dir)
        data = load_speaker_data(IndexStore.open(index_dir))
        id_of = archive.path_to_id()
        label_of = {p: archive.speakers[id_of[p]] for p in data.paths}
        file_of = {p: id_of[p] for p in data.paths}
        import os

        from awesearch.speaker_verify import load_verifier

        res = {
            "speaker_model": load_speaker_model().name, "bfloat16_lstm": load_speaker_model().bf16, "verifier": load_verifier().name,
            "load_average_start": os.getloadavg()[0],
            "verification": verification(data, label_of, file_of, verifier_embeddings(data, long_pieces(data))),
            "verification_lstm": verification(data, label_of, file_of),
        }
        print(json.dumps(res["verification"]), json.dumps(res["verification_lstm"]), flush=True)
        res["clustering"] = clustering(data, label_of)
        print(json.dumps(res["clustering"]), flush=True)
        res["filtered_search"] = filtered_search(index_dir, archive, data, args.threshold)
        res["filtered_search"]["threshold"] = args.threshold
        print(json.dumps({k: v for k, v in res["filtered_search"].items() if k != "rows"}), flush=True)
        res["cost"] = []
        if args.cost_minutes > 0:
            rec = work / "longform.wav"
            write_recording(rec, args.cost_minutes * 60)
            res["cost"].append(cost("generated long-form", [str(rec)], work, args.cost_repeats))
            print(json.dumps(res["cost"][-1]), flush=True)
        if not args.skip_real_cost:
            res["cost"].append(cost("real set", [str(p) for p in archive.files.values()], work, args.real_cost_repeats))
            print(json.dumps(res["cost"][-1]), flush=True)
        res["load_average_end"] = os.getloadavg()[0]
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    md = markdown(res)
    print(md)
    if args.out_json:
        args.out_json.write_text(json.dumps(res, indent=1))
    if args.out_md:
        args.out_md.write_text(md)


if __name__ == "__main__":
    main()
