"""The bmap format: parse/render, the file's own checksum, validation, mapping
sparse files with SEEK_DATA/SEEK_HOLE at the edge cases, range checksums."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import pytest

from imager.imaging import bmap as bm
from imager.imaging import compress

BS = 4096
DATA_DIR = Path(__file__).parent / "data" / "bmap"


def block(i: int, size: int = BS) -> bytes:
    """Deterministic, incompressible-enough content for block `i`."""
    seed = hashlib.sha256(f"block {i}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def sparse(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    """A sparse file of `size` bytes holding `writes` (offset, bytes), holes elsewhere."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in writes:
            os.pwrite(fh.fileno(), data, offset)
    return path


def blocks(*numbers: int) -> list[tuple[int, bytes]]:
    return [(n * BS, block(n)) for n in numbers]


def sample_raw(path: Path) -> Path:
    """The raw image of tests/data/bmap/sample*.bmap: 256 blocks + a 100-byte
    tail; data in blocks 0-3, 10, 100-149 and the tail."""
    writes = blocks(0, 1, 2, 3, 10, *range(100, 150)) + [(256 * BS, b"t" * 100)]
    return sparse(path, 256 * BS + 100, writes)


def reseal(text: str) -> str:
    """Recompute BmapFileChecksum the way bmaptool checks it (an independent
    implementation: value replaced by '0's, sha256 of the whole file)."""
    zeroed = re.sub(r"(<BmapFileChecksum>\s*)[0-9a-f]+", lambda m: m[1] + "0" * 64, text)
    digest = hashlib.sha256(zeroed.encode()).hexdigest()
    return re.sub(r"(<BmapFileChecksum>\s*)[0-9a-f]+", lambda m: m[1] + digest, zeroed)


def bmap_of(path: Path, block_size: int = BS) -> bm.Bmap:
    size = path.stat().st_size
    ranges = bm.map_file(path, block_size=block_size)
    return bm.make(image_size=size, block_size=block_size,
                   ranges=bm.checksum_ranges(path, ranges, block_size=block_size,
                                             image_size=size))


# --- map_file at the edge cases ---------------------------------------------

def test_hole_of_one_block(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 16 * BS, blocks(0, 1, 2, 3, 4, 6, 7, 8, 9))
    assert bm.map_file(raw) == [(0, 4), (6, 9)]


def test_range_ending_at_the_last_block(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 16 * BS, blocks(12, 13, 14, 15))
    assert bm.map_file(raw) == [(12, 15)]
    b = bmap_of(raw)
    assert b.ranges[-1].last == b.blocks_count - 1
    assert list(b.byte_ranges()) == [(12 * BS, 4 * BS, b.ranges[0])]


def test_one_byte_tail(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 16 * BS + 1, [*blocks(0), (16 * BS, b"z")])
    assert bm.map_file(raw) == [(0, 0), (16, 16)]
    b = bmap_of(raw)
    assert b.blocks_count == 17 and b.image_size == 16 * BS + 1
    assert b.ranges[1].sha256 == hashlib.sha256(b"z").hexdigest()   # only the byte inside
    assert list(b.byte_ranges())[1][:2] == (16 * BS, 1)
    assert b.mapped_bytes == BS + 1 and b.mapped_blocks == 2


def test_fully_sparse(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 64 * BS, [])
    assert bm.map_file(raw) == []
    b = bmap_of(raw)
    assert b.ranges == () and b.mapped_bytes == 0
    assert bm.parse(bm.render(b)) == b


def test_fully_mapped(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 8 * BS, blocks(*range(8)))
    assert bm.map_file(raw) == [(0, 7)]
    assert bmap_of(raw).ranges[0].sha256 == hashlib.sha256(raw.read_bytes()).hexdigest()


def test_data_not_aligned_to_blocks(tmp_path: Path) -> None:
    # 10 bytes across the boundary of blocks 3 and 4, 1 byte in the middle of block 9
    raw = sparse(tmp_path / "r", 16 * BS, [(4 * BS - 5, b"0123456789"), (9 * BS + 77, b"x")])
    assert bm.map_file(raw) == [(3, 4), (9, 9)]
    b = bmap_of(raw)
    data = raw.read_bytes()
    assert b.ranges[0].sha256 == hashlib.sha256(data[3 * BS:5 * BS]).hexdigest()


def test_larger_block_size_rounds_and_merges(tmp_path: Path) -> None:
    raw = sparse(tmp_path / "r", 16 * BS, blocks(1, 2, 5))
    assert bm.map_file(raw, block_size=2 * BS) == [(0, 2)]      # 8 KiB blocks 0,1 and 2
    assert bm.map_file(raw, block_size=512) == [(8, 23), (40, 47)]


def test_missing_raw_is_named(tmp_path: Path) -> None:
    with pytest.raises(bm.BmapError, match="nothing.raw"):
        bm.map_file(tmp_path / "nothing.raw")


# --- parse / render ----------------------------------------------------------

def test_parse_render_round_trip(tmp_path: Path) -> None:
    b = bmap_of(sample_raw(tmp_path / "sample.raw"))
    text = bm.render(b)
    assert reseal(text) == text            # checksum computed as bmaptool checks it
    assert bm.parse(text) == b and bm.parse(text.encode()) == b
    assert b.version == "2.0" and b.checksum_type == "sha256"
    assert [(r.first, r.last) for r in b.ranges] == [(0, 3), (10, 10), (100, 149), (256, 256)]
    assert '<Range chksum="' in text and "> 10 </Range>" in text and "> 100-149 </Range>" in text


def test_recorded_bmaptool_file_matches_our_raw(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    theirs = bm.read(DATA_DIR / "sample-bmaptool-3.6.bmap")
    assert theirs.ranges == bmap_of(raw).ranges
    assert theirs.image_size == raw.stat().st_size and theirs.block_size == BS


def test_bmap_13_with_sha1_is_read(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    old = bm.read(DATA_DIR / "sample-format-1.3.bmap")
    assert old.version == "1.3" and old.checksum_type == "sha1"
    assert old.hasher().name == "sha1"
    pairs = [(r.first, r.last) for r in old.ranges]
    assert bm.checksum_ranges(raw, pairs, block_size=BS, image_size=old.image_size,
                              checksum_type="sha1") == old.ranges


def test_altered_bmap_is_detected(tmp_path: Path) -> None:
    text = bm.render(bmap_of(sample_raw(tmp_path / "sample.raw")))
    first = re.search(r'chksum="([0-9a-f])', text)
    assert first is not None
    flipped = text[:first.start(1)] + ("1" if first[1] == "0" else "0") + text[first.end(1):]
    with pytest.raises(bm.BmapError, match="altered or damaged"):
        bm.parse(flipped, source="x.bmap")
    with pytest.raises(bm.BmapError, match="altered or damaged"):
        bm.parse(text.replace("> 100-149 <", "> 100-148 <"))
    with pytest.raises(bm.BmapError, match="must be 64 hex digits"):
        bm.parse(text.replace("<BmapFileChecksum> ", "<BmapFileChecksum> 0")
                 .replace(" </BmapFileChecksum>", "</BmapFileChecksum>"))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("> 10 </Range>", "> 2-10 </Range>"), "must not overlap"),
    (lambda t: t.replace("> 256 </Range>", "> 257 </Range>"), "beyond <BlocksCount> 257"),
    (lambda t: t.replace("> 100-149 <", "> 149-100 <"), "first block after last"),
    (lambda t: t.replace("<BlocksCount> 257", "<BlocksCount> 256"), "does not match"),
    (lambda t: t.replace("<MappedBlocksCount> 56 ", "<MappedBlocksCount> 55 "), "hold 56 blocks"),
    (lambda t: t.replace('version="2.0"', 'version="3.0"'), "3.0 is not supported"),
    (lambda t: t.replace("> sha256 <", "> md5 <"), "'md5' is not supported"),
    (lambda t: re.sub(r' chksum="[0-9a-f]+"> 10 <', "> 10 <", t), "has no checksum"),
    (lambda t: t.replace("> 10 </Range>", "> ten </Range>"), "'first-last'"),
    (lambda t: t.replace("<ImageSize>", "<ImageSize>x"), "<ImageSize>"),
    (lambda t: t.replace("</bmap>", ""), "not well-formed"),
    (lambda t: t.replace("<bmap ", "<map ").replace("</bmap>", "</map>"), "not <bmap>"),
])
def test_inconsistent_bmaps_are_refused(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    text = bm.render(bmap_of(sample_raw(tmp_path / "sample.raw")))
    with pytest.raises(bm.BmapError, match=re.escape(message)) as err:
        bm.parse(reseal(edit(text)), source="images/x.bmap")
    assert "images/x.bmap" in str(err.value)
    assert "imager image create" in str(err.value) or "bmaptool" in str(err.value)


def test_ranges_without_checksums_only_when_asked(tmp_path: Path) -> None:
    text = bm.render(bmap_of(sample_raw(tmp_path / "sample.raw")))
    bare = reseal(re.sub(r' chksum="[0-9a-f]+"', "", text))
    b = bm.parse(bare, require_checksums=False)
    assert {r.sha256 for r in b.ranges} == {""}


def test_doctype_is_refused() -> None:
    with pytest.raises(bm.BmapError, match="DOCTYPE"):
        bm.parse('<?xml version="1.0"?><!DOCTYPE bmap [<!ENTITY a "b">]><bmap/>')


def test_make_refuses_overlapping_ranges() -> None:
    with pytest.raises(bm.BmapError, match="must not overlap"):
        bm.make(image_size=8 * BS, block_size=BS,
                ranges=[bm.Range(0, 3, "0" * 64), bm.Range(3, 4, "0" * 64)])


# --- reading a decompressed stream through the bmap ----------------------------

def test_mapped_chunks_yield_each_range(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    b = bmap_of(raw)
    data = raw.read_bytes()
    got: dict[int, hashlib._Hash] = {}
    with compress.open_stream(io.BytesIO(data), "raw") as stream:
        for rng, offset, chunk in bm.mapped_chunks(stream, b, chunk=3000):
            assert bytes(chunk) == data[offset:offset + len(chunk)]
            got.setdefault(rng.first, hashlib.sha256()).update(chunk)
    assert {first: h.hexdigest() for first, h in got.items()} == \
        {r.first: r.sha256 for r in b.ranges}


def test_mapped_chunks_detect_a_short_image(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    b = bmap_of(raw)
    for cut in (120 * BS, 256 * BS + 50, 50 * BS):
        with compress.open_stream(io.BytesIO(raw.read_bytes()[:cut]), "raw") as stream, \
                pytest.raises(bm.BmapError, match="truncated"):
            for _ in bm.mapped_chunks(stream, b):
                pass


def test_human_size() -> None:
    assert [bm.human_size(n) for n in (0, 1536, 5 << 30)] == ["0 bytes", "1.5 KiB", "5.0 GiB"]
