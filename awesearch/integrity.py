"""Checksums of an index's data files: what the manifest records, how a file is checked, how damage reads.

Every data file a manifest names (whatever its kind: segments, files tables, phonetic frame files and any
kind added later) gets an entry {"size": bytes, "crc32": 8 hex digits} in manifest.checksums when it is
first committed; the writer computes it generically for every referenced name that has none
(indexer/writer.py). Readers check the files they read in full against it (the bytes are in memory
anyway, zlib.crc32 runs at about 2 GB/s here); a cheap check (presence and sizes) suits large indexes at
open, and `awesearch check` verifies every byte.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

CHECKSUM_BLOCK_BYTES = 8 << 20  # read size when checksumming a file
REPAIR_HINT = "run `awesearch index --verify` on the same folders to re-embed the recordings whose data was lost"
MISSING = "is missing"
BAD_CHECKSUM = "fails its checksum"


@dataclass(frozen=True)
class Checksum:
    size: int  # bytes
    crc32: str  # zlib.crc32 of the whole file, 8 lower-case hex digits

    def to_json(self) -> dict:
        return {"size": self.size, "crc32": self.crc32}

    @classmethod
    def from_json(cls, d: dict) -> "Checksum":
        return cls(size=int(d["size"]), crc32=str(d["crc32"]))


@dataclass(frozen=True)
class Damage:
    name: str  # file name inside the index directory
    problem: str  # MISSING, BAD_CHECKSUM, or "is truncated (N of M bytes)" / "has N bytes, expected M"

    def __str__(self) -> str:
        return f"{self.name} {self.problem}"


def checksum_bytes(data: bytes | memoryview) -> Checksum:
    return Checksum(size=len(data), crc32=f"{zlib.crc32(data) & 0xFFFFFFFF:08x}")


def checksum_file(path: Path) -> Checksum:
    crc, size = 0, 0
    with open(path, "rb") as f:
        while block := f.read(CHECKSUM_BLOCK_BYTES):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return Checksum(size=size, crc32=f"{crc & 0xFFFFFFFF:08x}")


def size_problem(actual: int, expected: int) -> str:
    if actual < expected:
        return f"is truncated ({actual} of {expected} bytes)"
    return f"has {actual} bytes, expected {expected}"


def check_bytes(name: str, data: bytes | memoryview, expected: Checksum | None) -> Damage | None:
    """Damage when data (a whole file just read) differs from its manifest entry; None when fine or unrecorded."""
    if expected is None:
        return None
    if len(data) != expected.size:
        return Damage(name, size_problem(len(data), expected.size))
    if checksum_bytes(data) != expected:
        return Damage(name, BAD_CHECKSUM)
    return None


def check_file(path: Path, expected: Checksum | None, full: bool) -> Damage | None:
    """Damage of one file: missing, wrong size, or (when full) a wrong checksum."""
    name = path.name
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return Damage(name, MISSING)
    if expected is None:
        return None
    if size != expected.size:
        return Damage(name, size_problem(size, expected.size))
    if full:
        try:
            actual = checksum_file(path)
        except FileNotFoundError:
            return Damage(name, MISSING)
        except OSError as e:
            return Damage(name, f"cannot be read ({e.strerror or e})")
        if actual != expected:
            return Damage(name, BAD_CHECKSUM)
    return None


def damage_message(directory: Path, damages: list[Damage]) -> str:
    """One line: which files are damaged and what to do."""
    first = str(damages[0])
    more = f" (and {len(damages) - 1} more file{'s' if len(damages) > 2 else ''})" if len(damages) > 1 else ""
    return f"index {directory} is damaged: {first}{more}; {REPAIR_HINT}"
