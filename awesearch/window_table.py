"""The table search reads of an index (the store builds it: awesearch/store.py `open_for_search`, the
approximate index in awesearch/approx.py): vectors of the live windows and where each one is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import IndexFormatError

if TYPE_CHECKING:
    import faiss


@dataclass
class WindowTable:
    """What search needs from an index: vectors of the live windows and where each one is.

    Row i of `index` is window i: file `paths[file_ids[i]]`, seconds `starts[i]`..`ends[i]`.
    """

    index: "faiss.Index"  # inner-product index over L2-normalised window embeddings
    file_ids: np.ndarray  # [n] int
    starts: np.ndarray  # [n] float seconds
    ends: np.ndarray  # [n] float seconds
    paths: list[str]  # file_id -> absolute path
    phon_paths: list | None = None  # file_id -> its phonetic frame file, or None (no phonetic store)

    def __post_init__(self) -> None:
        n = self.index.ntotal
        if not (len(self.file_ids) == len(self.starts) == len(self.ends) == n):
            raise IndexFormatError(
                f"index is damaged: {n} vectors but {len(self.file_ids)}/{len(self.starts)}/{len(self.ends)} window rows"
            )
