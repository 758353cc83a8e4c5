"""The block map (bmap) of a sparse raw image, in bmaptool's XML format.

A bmap lists the blocks of a raw image that hold data ("mapped"), as inclusive
block ranges, each with the checksum of its bytes, plus the checksum of the
bmap file itself. The format is bmaptool's (yoctoproject/bmaptool, Debian's
bmap-tools): we write version 2.0 with sha256 and read versions 1.x and 2.x.

    <bmap version="2.0">
        <ImageSize> 4294967296 </ImageSize>         bytes
        <BlockSize> 4096 </BlockSize>
        <BlocksCount> 1048576 </BlocksCount>        ceil(ImageSize / BlockSize)
        <MappedBlocksCount> 262144 </MappedBlocksCount>
        <ChecksumType> sha256 </ChecksumType>       (absent before 1.4; sha1 in 1.3)
        <BmapFileChecksum> hex </BmapFileChecksum>  (BmapFileSHA1 in 1.3)
        <BlockMap>
            <Range chksum="hex"> 0-255 </Range>     "first-last" or "n"; sha1="" in 1.3
        </BlockMap>
    </bmap>

BmapFileChecksum is the checksum of the whole file in which the value itself is
replaced by as many ASCII "0" as it has digits. The last range may end in a
partial block (ImageSize not a multiple of BlockSize): its checksum covers only
the bytes inside ImageSize.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from imager.errors import ImagerError
from imager.imaging.stream import Stream

VERSION = "2.0"                       # what we write
CHECKSUM_TYPES = ("sha256", "sha512", "sha384", "sha224", "sha1")  # what we read
CHUNK = 8 << 20                       # I/O size when reading images
_FIX = ("recreate it with `imager image create RAW` or `bmaptool create RAW -o FILE.bmap`")


class BmapError(ImagerError):
    """A bmap file is unreadable or inconsistent, or does not match its image."""


@dataclass(frozen=True)
class Range:
    """Mapped blocks `first`..`last` (inclusive, like the XML) and their checksum.

    `sha256` is the hex checksum of the range's bytes in the raw image, in the
    bmap's `checksum_type` (sha256 for every bmap we write; sha1 for bmap 1.3
    files). It is "" only for a bmap read with `require_checksums=False` that
    has none.
    """

    first: int
    last: int
    sha256: str

    @property
    def blocks(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Bmap:
    """A parsed or computed block map."""

    version: str
    image_size: int
    block_size: int
    blocks_count: int
    mapped_blocks: int
    checksum_type: str
    ranges: tuple[Range, ...]

    def byte_ranges(self) -> Iterator[tuple[int, int, Range]]:
        """(offset, length, range) of every mapped range, in bytes, clipped to image_size."""
        for rng in self.ranges:
            offset = rng.first * self.block_size
            end = min((rng.last + 1) * self.block_size, self.image_size)
            yield offset, end - offset, rng

    @property
    def mapped_bytes(self) -> int:
        """Bytes to copy: the mapped ranges clipped to image_size."""
        return sum(length for _, length, _ in self.byte_ranges())

    def hasher(self) -> hashlib._Hash:
        """A new hash object of this bmap's checksum type (for range checksums)."""
        return hashlib.new(self.checksum_type)


def make(*, image_size: int, block_size: int, ranges: Iterable[Range],
         checksum_type: str = "sha256") -> Bmap:
    """A version 2.0 bmap for `ranges` of an image of `image_size` bytes."""
    ranges = tuple(ranges)
    bmap = Bmap(VERSION, image_size, block_size, _blocks_count(image_size, block_size),
                sum(r.blocks for r in ranges), checksum_type, ranges)
    _check(bmap, "bmap", require_checksums=True)
    return bmap


def _blocks_count(image_size: int, block_size: int) -> int:
    return (image_size + block_size - 1) // block_size


# --- reading -----------------------------------------------------------------

def read(path: Path, *, require_checksums: bool = True) -> Bmap:
    """Parse and check the bmap file at `path` (see `parse`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BmapError(f"cannot read the bmap file {path}: {exc.strerror}; check the path "
                        "(`imager image list` shows the catalogue's images)") from exc
    return parse(data, source=str(path), require_checksums=require_checksums)


def parse(text: str | bytes, *, source: str = "bmap",
          require_checksums: bool = True) -> Bmap:
    """Parse a bmap (versions 1.x and 2.x) and check it: the file's own checksum,
    the sizes, and ranges sorted, not overlapping and inside BlocksCount.

    With `require_checksums` (the default) a range without a checksum is refused:
    a deployment checks every range. Any problem raises BmapError naming
    `source`, the element and the fix.
    """
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    root = _xml(data, source)
    version, major, minor = _version(root, source)
    cs_type, cs_tag, cs_attr = _checksum_kind(root, source, major, minor)
    image_size = _number(root, "ImageSize", source)
    block_size = _number(root, "BlockSize", source)
    blocks_count = _number(root, "BlocksCount", source)
    mapped = _number(root, "MappedBlocksCount", source, minimum=0)
    if cs_tag:
        _verify_file_checksum(data, root, source, cs_type, cs_tag)
    bmap = Bmap(version, image_size, block_size, blocks_count, mapped, cs_type,
                _ranges(root, source, cs_attr))
    _check(bmap, source, require_checksums=require_checksums)
    return bmap


def _xml(data: bytes, source: str) -> ElementTree.Element:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise BmapError(f"{source}: a bmap has no DOCTYPE or ENTITY declarations; {_FIX}")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise BmapError(f"{source} is not well-formed XML ({exc}): the file is truncated or "
                        f"not a bmap; {_FIX}") from exc
    if root.tag != "bmap":
        raise BmapError(f"{source}: the root element is <{root.tag}>, not <bmap>: not a bmap "
                        f"file; {_FIX}")
    return root


def _version(root: ElementTree.Element, source: str) -> tuple[str, int, int]:
    version = (root.get("version") or "").strip()
    match = re.fullmatch(r"(\d+)\.(\d+)", version)
    if not match:
        raise BmapError(f"{source}: <bmap version={version!r}> must be 'major.minor'; {_FIX}")
    major, minor = int(match[1]), int(match[2])
    if major not in (1, 2):
        raise BmapError(f"{source}: bmap format version {version} is not supported (1.x and "
                        f"2.x are); {_FIX}")
    return version, major, minor


def _checksum_kind(root: ElementTree.Element, source: str, major: int,
                   minor: int) -> tuple[str, str, str]:
    """(checksum type, file checksum element, range attribute) of this version.

    2.x and 1.4 name their type in ChecksumType; 1.3 used sha1 with its own
    element names; 1.0-1.2 had no checksums at all."""
    if major == 2 or (major, minor) == (1, 4):
        cs_type = _text(root, "ChecksumType", source).lower()
        if cs_type not in CHECKSUM_TYPES:
            raise BmapError(f"{source}: <ChecksumType> {cs_type!r} is not supported "
                            f"(one of {', '.join(CHECKSUM_TYPES)}); {_FIX}")
        return cs_type, "BmapFileChecksum", "chksum"
    if minor == 3:
        return "sha1", "BmapFileSHA1", "sha1"
    return "", "", ""


def _text(root: ElementTree.Element, tag: str, source: str) -> str:
    element = root.find(tag)
    if element is None or not (element.text or "").strip():
        raise BmapError(f"{source}: the element <{tag}> is missing or empty; {_FIX}")
    return (element.text or "").strip()


def _number(root: ElementTree.Element, tag: str, source: str, *, minimum: int = 1) -> int:
    text = _text(root, tag, source)
    if not text.isdigit() or int(text) < minimum:
        raise BmapError(f"{source}: <{tag}> {text!r} must be a whole number ≥ {minimum}; {_FIX}")
    return int(text)


def _verify_file_checksum(data: bytes, root: ElementTree.Element, source: str,
                          cs_type: str, tag: str) -> None:
    stated = _text(root, tag, source).lower()
    length = hashlib.new(cs_type).digest_size * 2
    if not re.fullmatch(rf"[0-9a-f]{{{length}}}", stated):
        raise BmapError(f"{source}: <{tag}> must be {length} hex digits of {cs_type}; {_FIX}")
    match = re.search(rb"(<%s>\s*)([0-9a-fA-F]+)(\s*</%s>)" % (tag.encode(), tag.encode()), data)
    if match is None:
        raise BmapError(f"{source}: <{tag}> must hold only its hex value; {_FIX}")
    zeroed = data[:match.start(2)] + b"0" * length + data[match.end(2):]
    actual = hashlib.new(cs_type, zeroed).hexdigest()
    if actual != stated:
        raise BmapError(f"{source}: the bmap file was altered or damaged: its {cs_type} is "
                        f"{actual}, <{tag}> says {stated}; get the bmap again from its source "
                        f"or {_FIX}")


def _ranges(root: ElementTree.Element, source: str, cs_attr: str) -> tuple[Range, ...]:
    block_map = root.find("BlockMap")
    if block_map is None:
        raise BmapError(f"{source}: the element <BlockMap> is missing; {_FIX}")
    ranges = []
    for index, element in enumerate(block_map.findall("Range")):
        text = (element.text or "").strip()
        match = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", text)
        if not match:
            raise BmapError(f"{source}: <Range> number {index + 1} is {text!r}, expected "
                            f"'first-last' or one block number; {_FIX}")
        first = int(match[1])
        last = int(match[2]) if match[2] is not None else first
        checksum = (element.get(cs_attr) or "").strip().lower() if cs_attr else ""
        ranges.append(Range(first, last, checksum))
    return tuple(ranges)


def _check(bmap: Bmap, source: str, *, require_checksums: bool) -> None:
    """Sizes agree, ranges sorted, disjoint, inside the image, checksums well formed."""
    if bmap.image_size < 1 or bmap.block_size < 1:
        raise BmapError(f"{source}: ImageSize and BlockSize must be positive; {_FIX}")
    expected = _blocks_count(bmap.image_size, bmap.block_size)
    if bmap.blocks_count != expected:
        raise BmapError(f"{source}: <BlocksCount> {bmap.blocks_count} does not match "
                        f"<ImageSize> {bmap.image_size} / <BlockSize> {bmap.block_size} "
                        f"(= {expected} blocks); {_FIX}")
    length = hashlib.new(bmap.checksum_type).digest_size * 2 if bmap.checksum_type else 0
    previous = -1
    for rng in bmap.ranges:
        where = f"{source}: <Range> {rng.first}-{rng.last}"
        if rng.first > rng.last:
            raise BmapError(f"{where}: first block after last block; {_FIX}")
        if rng.first <= previous:
            raise BmapError(f"{where}: ranges must be sorted and must not overlap (the "
                            f"previous range ends at block {previous}); {_FIX}")
        if rng.last >= bmap.blocks_count:
            raise BmapError(f"{where}: beyond <BlocksCount> {bmap.blocks_count} (last block "
                            f"{bmap.blocks_count - 1}); {_FIX}")
        _check_range_checksum(rng, where, length, require_checksums)
        previous = rng.last
    counted = sum(r.blocks for r in bmap.ranges)
    if counted != bmap.mapped_blocks:
        raise BmapError(f"{source}: <MappedBlocksCount> {bmap.mapped_blocks} but the ranges "
                        f"hold {counted} blocks; {_FIX}")


def _check_range_checksum(rng: Range, where: str, length: int, required: bool) -> None:
    if not rng.sha256:
        if required:
            raise BmapError(f"{where} has no checksum, so a deployment could not be verified; "
                            "make the bmap with checksums (bmap format ≥ 1.3, without "
                            f"`bmaptool create --no-checksum`): {_FIX}")
        return
    if not re.fullmatch(rf"[0-9a-f]{{{length}}}", rng.sha256):
        raise BmapError(f"{where}: checksum {rng.sha256!r} must be {length} hex digits; {_FIX}")


# --- writing -----------------------------------------------------------------

def human_size(size: float) -> str:
    """1536 -> '1.5 KiB' (for the bmap's comments and messages)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def render(bmap: Bmap) -> str:
    """The bmap as a version 2.0 XML file, BmapFileChecksum computed as bmaptool
    checks it: over the file whose checksum value is all "0"."""
    _check(bmap, "bmap", require_checksums=True)
    cs_type = bmap.checksum_type
    percent = bmap.mapped_blocks * 100.0 / bmap.blocks_count
    lines = [
        '<?xml version="1.0" ?>',
        "<!-- Block map of a raw disk image (bmaptool format): the blocks that hold data",
        "     and the checksum of each range. Only these blocks are written when the",
        "     image is deployed. Made by imager. -->",
        f'<bmap version="{VERSION}">',
        f"    <!-- Image size in bytes: {human_size(bmap.image_size)} -->",
        f"    <ImageSize> {bmap.image_size} </ImageSize>",
        "    <!-- Size of a block in bytes -->",
        f"    <BlockSize> {bmap.block_size} </BlockSize>",
        "    <!-- Count of blocks in the image file -->",
        f"    <BlocksCount> {bmap.blocks_count} </BlocksCount>",
        f"    <!-- Count of mapped blocks: {human_size(bmap.mapped_blocks * bmap.block_size)}"
        f" or {percent:.1f}% -->",
        f"    <MappedBlocksCount> {bmap.mapped_blocks} </MappedBlocksCount>",
        "",
        "    <!-- Type of checksum used in this file -->",
        f"    <ChecksumType> {cs_type} </ChecksumType>",
        "",
        '    <!-- Checksum of this file, computed with this value set to all "0" -->',
        "    <BmapFileChecksum> @CHECKSUM@ </BmapFileChecksum>",
        "",
        '    <!-- Mapped blocks: "first-last" or one block, with the checksum of their bytes -->',
        "    <BlockMap>",
        *(f'        <Range chksum="{r.sha256}"> {_range_text(r)} </Range>' for r in bmap.ranges),
        "    </BlockMap>",
        "</bmap>",
        "",
    ]
    text = "\n".join(lines)
    zeros = "0" * (hashlib.new(cs_type).digest_size * 2)
    checksum = hashlib.new(cs_type, text.replace("@CHECKSUM@", zeros).encode()).hexdigest()
    return text.replace("@CHECKSUM@", checksum)


def _range_text(rng: Range) -> str:
    return f"{rng.first}-{rng.last}" if rng.last != rng.first else str(rng.first)


# --- sparse raw files --------------------------------------------------------

def map_file(path: Path, *, block_size: int = 4096) -> list[tuple[int, int]]:
    """Mapped block ranges (first, last inclusive) of a sparse file, from
    SEEK_DATA/SEEK_HOLE: data starts are rounded down and ends up to block
    boundaries, adjacent or overlapping ranges merged."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise BmapError(f"cannot open the raw image {path}: {exc.strerror}") from exc
    try:
        return _merge(_data_extents(fd, path), block_size)
    finally:
        os.close(fd)


def _data_extents(fd: int, path: Path) -> Iterator[tuple[int, int]]:
    """(start, end) byte extents of data, end exclusive."""
    size = os.fstat(fd).st_size
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:        # no data after pos
                return
            raise BmapError(f"cannot map the data of {path} (SEEK_DATA): {exc.strerror}") from exc
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def _merge(extents: Iterable[tuple[int, int]], block_size: int) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for start, end in extents:
        first, last = start // block_size, (end + block_size - 1) // block_size - 1
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    return ranges


def walk(fd: int, block_ranges: Iterable[tuple[int, int]], *, block_size: int,
         image_size: int, holes: bool = True,
         chunk: int = CHUNK) -> Iterator[tuple[int | None, memoryview]]:
    """The raw image in order as (range index, bytes): mapped ranges read from
    `fd` (index into `block_ranges`), holes as zeros (index None, never read
    from disk; left out when `holes` is false).

    The views are reused: consume each one before asking for the next.
    """
    buffer, zeros = bytearray(chunk), memoryview(bytes(chunk)) if holes else memoryview(b"")
    view, pos = memoryview(buffer), 0
    for index, (first, last) in enumerate(block_ranges):
        start, end = first * block_size, min((last + 1) * block_size, image_size)
        if holes:
            yield from _zeros(zeros, start - pos)
        for offset in range(start, end, chunk):
            length = min(chunk, end - offset)
            got = os.preadv(fd, [view[:length]], offset)
            if got != length:
                raise BmapError(f"short read in the raw image at byte {offset + got}: the file "
                                "shrank while it was read; leave it alone during the run")
            yield index, view[:length]
        pos = end
    if holes:
        yield from _zeros(zeros, image_size - pos)


def _zeros(zeros: memoryview, count: int) -> Iterator[tuple[None, memoryview]]:
    while count > 0:
        length = min(count, len(zeros))
        yield None, zeros[:length]
        count -= length


def checksum_ranges(path: Path, block_ranges: Iterable[tuple[int, int]], *, block_size: int,
                    image_size: int, checksum_type: str = "sha256") -> tuple[Range, ...]:
    """The Range (with checksum) of each block range of the raw file at `path`;
    only mapped data is read."""
    block_ranges = list(block_ranges)
    hashers = [hashlib.new(checksum_type) for _ in block_ranges]
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise BmapError(f"cannot open the raw image {path}: {exc.strerror}") from exc
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        for index, data in walk(fd, block_ranges, block_size=block_size,
                                image_size=image_size, holes=False):
            if index is not None:
                hashers[index].update(data)
    finally:
        os.close(fd)
    return tuple(Range(first, last, h.hexdigest())
                 for (first, last), h in zip(block_ranges, hashers, strict=True))


def mapped_chunks(stream: Stream, bmap: Bmap, *,
                  chunk: int = CHUNK) -> Iterator[tuple[Range, int, memoryview]]:
    """Read a decompressed raw image from `stream` in order and yield the mapped
    data as (range, offset in the image, bytes); holes are read and dropped.

    `stream.readinto` must fill its buffer except at the end (compress.open_stream
    streams do). The views are reused: consume each before the next. Raises
    BmapError when the stream ends before image_size.
    """
    buffer = bytearray(chunk)
    view, pos = memoryview(buffer), 0
    for offset, length, rng in bmap.byte_ranges():
        _skip(stream, offset - pos, offset)
        end = offset + length
        while offset < end:
            got = stream.readinto(view[:min(chunk, end - offset)])
            if not got:
                raise _short(offset, bmap)
            yield rng, offset, view[:got]
            offset += got
        pos = end


def _skip(stream: Stream, count: int, until: int) -> None:
    while count > 0:
        got = stream.skip(count)
        if not got:
            raise BmapError(f"the image ends at byte {until - count}, before the data of block "
                            f"range starting at byte {until}: the compressed file is "
                            "truncated; get it again (`imager image verify NAME`)")
        count -= got


def _short(offset: int, bmap: Bmap) -> BmapError:
    return BmapError(f"the image ends at byte {offset} but its bmap says {bmap.image_size} "
                     "bytes: the compressed file is truncated or is not this bmap's image; "
                     "get it again (`imager image verify NAME`)")
