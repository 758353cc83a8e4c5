"""Interoperability with Debian's bmaptool (bmap-tools 3.6), both ways: our
images and bmaps are accepted by `bmaptool copy`, its bmaps by us, and for the
same raw both tools find the same ranges and checksums."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import need
from test_bmap import BS, DATA_DIR, block, blocks, bmap_of, reseal, sample_raw, sparse

from imager.imaging import bmap as bm
from imager.imaging import compress
from imager.imaging.create import create


@pytest.fixture(scope="module")
def bmaptool() -> str:
    path = shutil.which("bmaptool")
    need(path is not None, "needs bmaptool (Debian package bmap-tools): run "
                           "./scripts/install --test")
    return path or "bmaptool"


def run(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout}{proc.stderr}")
    return proc


def edge_raw(path: Path) -> Path:
    """Holes of one block, a long hole (two ready-made zstd frames), a range
    ending at the last block and a 1-byte tail."""
    long_hole = 2 * compress.ZERO_FRAME
    tail = long_hole + 64 * BS
    writes = [*blocks(0, 1, 3, 5, 6, 7), (4 * BS - 3, b"abc"),
              (long_hole + 8 * BS, block(9) * 4), (tail, b"!")]
    return sparse(path, tail + 1, writes)


@pytest.mark.parametrize("raw_maker", [sample_raw, edge_raw], ids=["sample", "edges"])
def test_bmaptool_copies_our_images(tmp_path: Path, bmaptool: str, raw_maker) -> None:  # noqa: ANN001
    raw = raw_maker(tmp_path / "disk.raw")
    built = create(raw, tmp_path / "out", name="disk", version="1")
    target = tmp_path / "target.raw"
    out = run(bmaptool, "copy", "--bmap", built.files.bmap, built.files.image, target)
    assert "block map format version 2.0" in out.stderr
    assert target.stat().st_size == raw.stat().st_size
    assert hashlib.sha256(target.read_bytes()).digest() == \
        hashlib.sha256(raw.read_bytes()).digest()


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_bmaptool_copies_xz_and_gzip(tmp_path: Path, bmaptool: str, kind: str) -> None:
    raw = sample_raw(tmp_path / "disk.raw")
    packed = tmp_path / f"disk.img{compress.SUFFIXES[kind]}"      # bmaptool goes by name
    compress.compress_file(raw, packed, kind=kind, level=1)
    (tmp_path / "disk.bmap").write_text(bm.render(bmap_of(raw)))
    run(bmaptool, "copy", "--bmap", tmp_path / "disk.bmap", packed, tmp_path / "t.raw")
    assert (tmp_path / "t.raw").read_bytes() == raw.read_bytes()


def test_bmaptool_checks_our_checksums(tmp_path: Path, bmaptool: str) -> None:
    raw = sample_raw(tmp_path / "disk.raw")
    built = create(raw, tmp_path / "out", name="disk", version="1")
    text = built.files.bmap.read_text()
    wrong = re.sub(r'chksum="[0-9a-f]+"> 10 <', f'chksum="{"ab" * 32}"> 10 <', text)
    altered, resealed = tmp_path / "altered.bmap", tmp_path / "resealed.bmap"
    altered.write_text(wrong)                  # our file checksum no longer matches
    resealed.write_text(reseal(wrong))         # file checksum right, range checksum wrong
    out = run(bmaptool, "copy", "--bmap", altered, built.files.image, tmp_path / "t1", ok=False)
    assert out.returncode != 0 and "checksum mismatch for bmap file" in out.stderr
    out = run(bmaptool, "copy", "--bmap", resealed, built.files.image, tmp_path / "t2", ok=False)
    assert out.returncode != 0 and "checksum mismatch for blocks range 10-10" in out.stderr


@pytest.mark.parametrize("raw_maker", [sample_raw, edge_raw], ids=["sample", "edges"])
def test_same_ranges_and_checksums_as_bmaptool(tmp_path: Path, bmaptool: str,
                                               raw_maker) -> None:  # noqa: ANN001
    raw = raw_maker(tmp_path / "disk.raw")
    run(bmaptool, "create", raw, "-o", tmp_path / "theirs.bmap")
    theirs = bm.read(tmp_path / "theirs.bmap")          # their file checksum verified
    ours = bmap_of(raw)
    assert (theirs.image_size, theirs.block_size, theirs.blocks_count, theirs.mapped_blocks) \
        == (ours.image_size, ours.block_size, ours.blocks_count, ours.mapped_blocks)
    assert theirs.ranges == ours.ranges
    # and their checksums hold for the raw, computed by us
    pairs = [(r.first, r.last) for r in theirs.ranges]
    assert bm.checksum_ranges(raw, pairs, block_size=BS,
                              image_size=theirs.image_size) == theirs.ranges


def test_recorded_bmaptool_file_is_still_accepted_by_bmaptool(tmp_path: Path,
                                                              bmaptool: str) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    for name in ("sample-bmaptool-3.6.bmap", "sample-format-1.3.bmap"):
        target = tmp_path / f"{name}.out"
        run(bmaptool, "copy", "--bmap", DATA_DIR / name, raw, target)
        assert target.read_bytes() == raw.read_bytes()
