"""Searching several indexes (shards, e.g. one per machine) as one: each answers, hits merged by score.

Every shard must have been built with the same encoder (same checksum), so scores are comparable. Each
shard runs the whole query (SearchEngine.search / search_texts, whatever stages that includes) for the top
k; the union is merged best first with the same per-file NMS, so a recording indexed in two shards still
gives one hit per spoken occurrence.
"""

from __future__ import annotations

from pathlib import Path

from .errors import QueryError
from .search import Hit, SearchEngine, nms


class ShardedEngine:
    """The query methods of SearchEngine over several indexes."""

    def __init__(self, engines: list[SearchEngine]):
        if not engines:
            raise QueryError("give at least one index")
        self.engines = engines

    @classmethod
    def open(cls, index_dirs: list[str | Path]) -> "ShardedEngine":
        """Open every index, loading the encoder once; QueryError when they were built by different encoders."""
        from .store import IndexStore

        dirs = [Path(d) for d in index_dirs]
        manifests = [IndexStore.open(d).manifest for d in dirs]
        for d, m in zip(dirs[1:], manifests[1:]):
            if m.encoder_checksum != manifests[0].encoder_checksum:
                raise QueryError(
                    f"indexes {dirs[0]} ({manifests[0].encoder_name}) and {d} ({m.encoder_name}) were built with "
                    "different encoders; their scores cannot be merged"
                )
        return cls([SearchEngine.open(d) for d in dirs])  # each with its own phonetic store and calibration

    @property
    def calibrated(self) -> bool:
        return all(e.calibrated for e in self.engines)

    def limits(self, k: int | None, threshold: float | None) -> tuple[int, float | None]:
        """The effective (cap, threshold) of a query, as the first shard's SearchEngine.limits."""
        return self.engines[0].limits(k, threshold)

    def search(self, k: int | None = None, threshold: float | None = None, **query) -> list[Hit]:
        """SearchEngine.search on every shard (text=, audio=, start=, end=), merged."""
        cap, _ = self.limits(k, threshold)
        return nms([h for e in self.engines for h in e.search(k=k, threshold=threshold, **query)], cap)

    def search_texts(self, texts: list[str], k: int | None = None, threshold: float | None = None) -> list[list[Hit]]:
        cap, _ = self.limits(k, threshold)
        per_shard = [e.search_texts(texts, k=k, threshold=threshold) for e in self.engines]
        return [nms([h for shard in per_shard for h in shard[i]], cap) for i in range(len(texts))]
