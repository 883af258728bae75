"""Fit the per-dimension mean/std of Whisper tiny.en encoder frames on espeak-ng speech and write
awesearch/assets/whisper_tiny_en_stats.npz (used by WhisperFrontend(standardize=True)).

Synthetic speech only (never the evaluation recordings). Clips are packed into 30 s blocks at
random offsets, so the statistics cover every encoder position. Run: python benchmarks/build_whisper_stats.py
"""

from __future__ import annotations

import numpy as np

from awesearch.tts import synthesize
from awesearch.whisper_frontend import BLOCK_SAMPLES, STATS_PATH, SAMPLE_RATE, WhisperFrontend

SEED = 0
N_BLOCKS = 24  # 12 min of encoder input
MAX_GAP_S = 2.0  # seconds of random silence between clips
VARIANTS = ["m1", "m3", "m7", "f1", "f2", "f4", "klatt", "klatt3", "Andy", "Annie", "belinda", "caleb"]
SENTENCES = [
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "it's easy to tell the depth of a well",
    "these days a chicken leg is a rare dish",
    "rice is often served in round bowls",
    "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck",
    "four hours of steady work faced us",
    "a large size in stockings is hard to sell",
    "meeting notes should list every decision and its owner",
    "please send the quarterly budget before friday afternoon",
    "the weather forecast predicts heavy rain over the mountains",
    "seventeen people attended the conference in september",
    "she opened the window and listened to the traffic",
    "our engineers measured the latency of the new server",
    "bring your passport and two photographs to the embassy",
]


def synthetic_blocks(rng: np.random.Generator) -> list[np.ndarray]:
    blocks = []
    for _ in range(N_BLOCKS):
        buf = np.zeros(BLOCK_SAMPLES, dtype=np.float32)
        pos = int(rng.integers(0, int(MAX_GAP_S * SAMPLE_RATE)))
        while True:
            s = synthesize(
                str(rng.choice(SENTENCES)),
                rate=int(rng.integers(130, 230)),
                pitch=int(rng.integers(25, 75)),
                variant=str(rng.choice(VARIANTS)),
            )
            gain = 10 ** (rng.uniform(-20, 0) / 20)
            if pos + len(s.audio) > BLOCK_SAMPLES:
                break
            buf[pos : pos + len(s.audio)] = s.audio * gain
            pos += len(s.audio) + int(rng.integers(0, int(MAX_GAP_S * SAMPLE_RATE)))
        blocks.append(buf)
    return blocks


def main() -> None:
    rng = np.random.default_rng(SEED)
    fe = WhisperFrontend(standardize=False)
    blocks = synthetic_blocks(rng)
    frames = np.concatenate([fe._encode_blocks(blocks[i : i + 2]) for i in range(0, len(blocks), 2)]).reshape(-1, 384)
    mean, std = frames.mean(0), frames.std(0)
    np.savez(STATS_PATH, mean=mean.astype(np.float32), std=std.astype(np.float32), n_frames=len(frames), seed=SEED)
    print(f"wrote {STATS_PATH}: {len(frames)} frames, std range {std.min():.3f}..{std.max():.3f}")


if __name__ == "__main__":
    main()
