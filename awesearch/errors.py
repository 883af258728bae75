"""Library errors. The CLI turns any AwesearchError into one line on stderr and exit code 1."""


class AwesearchError(Exception):
    """Base class: a user-facing problem with a one-line message (no traceback)."""


class AudioDecodeError(AwesearchError):
    """A file could not be read or decoded as audio."""


class IndexFormatError(AwesearchError):
    """The index on disk was made by another format version or encoder, or is damaged."""


class IndexDamagedError(IndexFormatError):
    """A data file of the index is missing, truncated or fails its checksum (repairable by re-indexing)."""

    def __init__(self, message: str, damages: list | None = None):
        super().__init__(message)
        self.damages = damages or []  # [awesearch.integrity.Damage]


class IndexWriteError(AwesearchError):
    """Writing the index failed (disk full, I/O error); everything committed before is intact."""


class IndexLockedError(AwesearchError):
    """Another indexer holds the index lock."""


class IndexMissingError(AwesearchError):
    """No index exists at the given location."""


class QueryError(AwesearchError):
    """A query is unusable (empty text, silent or too-short audio, ...)."""


class CheckpointError(AwesearchError):
    """An encoder checkpoint is missing, corrupt or of an unknown version."""
