"""A newc cpio writer (the format of Linux initramfs archives), pure Python.

    data = newc([Entry.dir("etc"), Entry.file("etc/imager/station-ca.pem", pem)])

Parent directories are added when missing; every file and directory belongs to
root, with a fixed modification time (the archive is the same bytes for the
same content). The kernel unpacks an uncompressed archive appended after
compressed ones, so `station.img` needs no compression.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TRAILER = "TRAILER!!!"
S_IFDIR = 0o040000
S_IFREG = 0o100000


@dataclass(frozen=True)
class Entry:
    """One member: a path without a leading slash, its mode bits and content."""

    path: str
    mode: int
    data: bytes = b""

    @classmethod
    def file(cls, path: str, data: bytes, perm: int = 0o644) -> Entry:
        return cls(_clean(path), S_IFREG | perm, data)

    @classmethod
    def dir(cls, path: str, perm: int = 0o755) -> Entry:
        return cls(_clean(path), S_IFDIR | perm)


def _clean(path: str) -> str:
    parts = [p for p in path.strip("/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"cpio member {path!r}: give a relative path without '..'")
    return "/".join(parts)


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, mode: int, nlink: int, size: int, name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0)
    head = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    return head + name + b"\0" + _pad(len(head) + len(name) + 1)


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    out: dict[str, Entry] = {}
    for entry in entries:
        parts = entry.path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            out.setdefault(parent, Entry.dir(parent))
        out[entry.path] = entry
    return list(out.values())


def newc(entries: Iterable[Entry]) -> bytes:
    """The archive of `entries` (missing parent directories added, in order)."""
    chunks: list[bytes] = []
    for ino, entry in enumerate(_with_parents(entries), start=1):
        nlink = 2 if entry.mode & S_IFDIR else 1
        chunks += [_header(ino, entry.mode, nlink, len(entry.data), entry.path.encode()),
                   entry.data, _pad(len(entry.data))]
    chunks.append(_header(0, 0, 1, 0, TRAILER.encode()))
    return b"".join(chunks)
