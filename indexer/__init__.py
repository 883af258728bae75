"""The offline indexing pipeline: `index_paths(paths, index_dir)` (see indexer/pipeline.py)."""

from .pipeline import IndexReport, Progress, SkippedFile, index_paths

__all__ = ["IndexReport", "Progress", "SkippedFile", "index_paths"]
