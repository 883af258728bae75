"""Finding recordings under the given paths and deciding which ones need (re-)indexing."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from awesearch.audio import is_audio_path
from awesearch.errors import AwesearchError
from awesearch.store import STATUS_INDEXED, FileRecord

HASH_BLOCK_BYTES = 1 << 20  # read size when hashing


@dataclass
class ScannedFile:
    path: str  # absolute, symlinks not resolved
    size: int  # bytes (0 when it could not be stat'ed)
    mtime_ns: int
    error: str = ""  # one-line reason this file cannot be read at all ("" when fine)


@dataclass
class Plan:
    """What a run has to do, from comparing a scan with the committed files table."""

    todo: list[tuple[ScannedFile, str]]  # (file, content hash) to decode and embed
    unchanged: list[FileRecord]  # committed and identical
    touched: list[FileRecord]  # identical content, new size/mtime: only the record changes
    unreadable: list[ScannedFile]  # cannot be opened at all
    removed: set[str]  # committed paths that are gone


def _abs(p: str | os.PathLike) -> str:
    return os.path.abspath(os.fspath(p))


def _stat(path: str) -> ScannedFile:
    if os.path.islink(path) and not os.path.exists(path):
        return ScannedFile(path, 0, 0, "broken symlink")
    try:
        st = os.stat(path)
    except PermissionError:
        return ScannedFile(path, 0, 0, "permission denied")
    except OSError as e:
        return ScannedFile(path, 0, 0, f"cannot stat: {e.strerror or e}")
    if not os.access(path, os.R_OK):
        return ScannedFile(path, st.st_size, st.st_mtime_ns, "permission denied")
    return ScannedFile(path, st.st_size, st.st_mtime_ns)


def scan(roots: list[str | os.PathLike]) -> list[ScannedFile]:
    """Audio files under the roots (recursively; a root may itself be a file), sorted by path.

    Directory symlinks are not followed (no loops); file symlinks are, and broken ones are reported.
    A root that does not exist is an error: it is almost always a typo.
    """
    found: dict[str, ScannedFile] = {}
    for root in roots:
        root = _abs(root)
        if not os.path.lexists(root):
            raise AwesearchError(f"no such file or directory: {root}")
        if not os.path.isdir(root):
            found[root] = _stat(root)  # named explicitly: try it whatever its extension
            continue

        def unreadable_dir(err: OSError) -> None:
            path = _abs(err.filename)
            found[path] = ScannedFile(path, 0, 0, f"cannot list directory: {err.strerror or err}")

        for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_dir, followlinks=False):
            dirnames.sort()
            for name in filenames:
                if is_audio_path(name):
                    path = os.path.join(dirpath, name)
                    found[path] = _stat(path)
    return [found[p] for p in sorted(found)]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK_BYTES):
            h.update(block)
    return h.hexdigest()


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def plan(roots: list[str | os.PathLike], scanned: list[ScannedFile], committed: dict[str, FileRecord]) -> Plan:
    """Compare by size and mtime first, then by content hash.

    Removed: committed paths under the scanned roots that the scan did not find, and committed paths
    anywhere that no longer exist. Skipped files are always retried (their reason may have gone away).
    """
    abs_roots = [_abs(r) for r in roots]
    seen = {s.path for s in scanned}
    removed = {p for p in committed if p not in seen and (_under(p, abs_roots) or not os.path.lexists(p))}
    out = Plan(todo=[], unchanged=[], touched=[], unreadable=[], removed=removed)
    for s in scanned:
        if s.error:
            out.unreadable.append(s)
            continue
        old = committed.get(s.path)
        was_indexed = old is not None and old.status == STATUS_INDEXED
        if was_indexed and old.size == s.size and old.mtime_ns == s.mtime_ns:
            out.unchanged.append(old)
            continue
        try:
            digest = file_sha256(s.path)
        except OSError as e:
            out.unreadable.append(ScannedFile(s.path, s.size, s.mtime_ns, f"cannot read: {e.strerror or e}"))
            continue
        if was_indexed and old.size == s.size and old.content_hash == digest:
            old_touched = FileRecord(**{**old.__dict__, "mtime_ns": s.mtime_ns})
            out.touched.append(old_touched)
            continue
        out.todo.append((s, digest))
    return out
