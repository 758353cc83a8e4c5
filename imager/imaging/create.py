"""`imager image create`: a sparse raw disk image -> the three files of an image.

    <name>-<version>.img.zst          the whole raw, holes as zeros, zstd (multithreaded)
    <name>-<version>.bmap             bmap v2.0: mapped ranges, sha256 each
    <name>-<version>.manifest.json    what it is, sizes, sha256 of both files
    <name>-<version>.manifest.signed.json   the manifest signed by the station key

One pass over the raw: only mapped ranges are read from disk (holes are fed to
the compressor from a zero buffer), and each range is hashed as it goes by.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from imager import __version__
from imager.certify.keys import StationKeys
from imager.certify.signing import check_signing_keys, sign_document
from imager.errors import UsageError
from imager.host.files import atomic_file, write_atomic
from imager.imaging import bmap as bmaplib
from imager.imaging import compress

FORMAT = "imager-image/1"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]{0,99}")
Progress = Callable[[int, int], None]      # (bytes done, bytes in all)


@dataclass(frozen=True)
class Files:
    """Where the files of image `stem` are in `folder`."""

    folder: Path
    stem: str

    @classmethod
    def of(cls, folder: Path, name: str, version: str) -> Files:
        return cls(folder, f"{name}-{version}")

    @property
    def image(self) -> Path:
        return self.folder / f"{self.stem}.img.zst"

    @property
    def bmap(self) -> Path:
        return self.folder / f"{self.stem}.bmap"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.stem}.manifest.json"

    @property
    def signed(self) -> Path:
        return self.folder / f"{self.stem}.manifest.signed.json"

    def all(self) -> tuple[Path, ...]:
        return self.image, self.bmap, self.manifest, self.signed


@dataclass(frozen=True)
class Built:
    """What `create` made."""

    files: Files
    manifest: dict[str, Any]
    signed: bool
    seconds: float


def check_name(value: str, what: str) -> str:
    """A name or version usable in a file name, else UsageError."""
    if not NAME.fullmatch(value):
        raise UsageError(f"nom ou version refusé / {what} {value!r} must start with a letter "
                         "or digit and hold only "
                         "letters, digits and . _ + ~ - (at most 100), e.g. debian12-bureau")
    return value


def create(raw: Path, folder: Path, *, name: str, version: str, profile: str | None = None,
           level: int | None = None, threads: int = -1, block_size: int = 4096,
           keys: StationKeys | None = None, progress: Progress | None = None) -> Built:
    """Make the image files of the sparse raw image `raw` in `folder`.

    The manifest is signed when `keys` are given. Refuses to overwrite an image
    with the same name and version."""
    started = time.monotonic()
    files = Files.of(folder, check_name(name, "name"), check_name(version, "version"))
    image_size = _raw_size(raw)
    _refuse_existing(files)
    ranges = bmaplib.map_file(raw, block_size=block_size)
    checksums, image_sha, compressed = _compress(raw, files.image, ranges, block_size=block_size,
                                                 image_size=image_size, level=level,
                                                 threads=threads, progress=progress)
    try:
        manifest = _describe(files, raw, name=name, version=version, profile=profile,
                             image=(image_sha, compressed), keys=keys,
                             bmap=bmaplib.make(image_size=image_size, block_size=block_size,
                                               ranges=checksums))
    except BaseException:
        for path in files.all():           # no half-made image left behind
            path.unlink(missing_ok=True)
        raise
    return Built(files, manifest, keys is not None, time.monotonic() - started)


def _describe(files: Files, raw: Path, *, name: str, version: str, profile: str | None,
              image: tuple[str, int], bmap: bmaplib.Bmap,
              keys: StationKeys | None) -> dict[str, Any]:
    """Write the bmap and the manifest (signed when `keys` are given)."""
    bmap_text = bmaplib.render(bmap).encode()
    write_atomic(files.bmap, bmap_text)
    manifest = {
        "format": FORMAT, "name": name, "version": version, "profile": profile,
        "image_size": bmap.image_size, "mapped_bytes": bmap.mapped_bytes,
        "block_size": bmap.block_size,
        "image": {"file": files.image.name, "compression": "zstd", "size": image[1],
                  "sha256": image[0]},
        "bmap": {"file": files.bmap.name, "sha256": hashlib.sha256(bmap_text).hexdigest()},
        "built": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "imager_version": __version__, "source": raw.name,
    }
    write_manifest(files, manifest, keys)
    return manifest


def write_manifest(files: Files, manifest: dict[str, Any], keys: StationKeys | None) -> None:
    """Write the manifest, and its signed copy when `keys` are given."""
    write_atomic(files.manifest, manifest_bytes(manifest))
    if keys is not None:
        check_signing_keys(keys)
        write_atomic(files.signed, sign_document(manifest, keys))


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()


def _raw_size(raw: Path) -> int:
    try:
        info = raw.stat()
    except OSError as exc:
        raise UsageError(f"image brute illisible / cannot read the raw image {raw}: "
                         f"{exc.strerror}; give the path of a raw disk image file") from exc
    if not raw.is_file() or info.st_size == 0:
        raise UsageError(f"pas une image disque brute / {raw} is not a raw disk image (a "
                         "regular, non-empty file); make one "
                         "with e.g. `truncate -s 8G disk.raw` then partition and fill it")
    return info.st_size


def _refuse_existing(files: Files) -> None:
    existing = [p for p in files.all() if p.exists()]
    if existing:
        raise UsageError(f"l'image existe déjà / the image {files.stem} already exists in "
                         f"{files.folder} "
                         f"({existing[0].name}): give another --version, or remove it first "
                         "(`imager image rm NAME VERSION` in the catalogue)")


class _HashingWriter:
    """The compressed file: written, hashed and counted as it goes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha256, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


def _compress(raw: Path, target: Path, ranges: list[tuple[int, int]], *, block_size: int,
              image_size: int, level: int | None, threads: int,
              progress: Progress | None) -> tuple[list[bmaplib.Range], str, int]:
    """Compress the raw to `target` and hash each range on the way."""
    hashers = [hashlib.sha256() for _ in ranges]
    fd = os.open(raw, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        with atomic_file(target, "image") as fh:
            out = _HashingWriter(fh)
            with compress.ImageWriter(out, "zstd", level=level, threads=threads) as writer:
                done = 0
                for index, data in bmaplib.walk(fd, ranges, block_size=block_size,
                                                image_size=image_size):
                    if index is None:
                        writer.write_zeros(len(data))
                    else:
                        hashers[index].update(data)
                        writer.write(data)
                    done += len(data)
                    if progress is not None:
                        progress(done, image_size)
    finally:
        os.close(fd)
    checksums = [bmaplib.Range(first, last, h.hexdigest())
                 for (first, last), h in zip(ranges, hashers, strict=True)]
    return checksums, out.sha256.hexdigest(), out.size
