"""Compressed images (zstd, xz, gzip told apart by magic bytes, streamed back
with their errors named) and `imager image create`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import re
from pathlib import Path

import pytest
import zstandard
from clirun import imager
from test_bmap import BS, block, blocks, bmap_of, sample_raw, sparse

from imager import __version__
from imager.certify.keys import station_keys
from imager.certify.signing import Checks, Trust, read_envelope, verify_envelope
from imager.errors import UsageError
from imager.imaging import bmap as bm
from imager.imaging import compress
from imager.imaging.create import create
from imager.settings import Settings

PAYLOAD = b"".join(block(i) for i in range(64)) + bytes(300_000) + b"end"


def packed(kind: str, data: bytes = PAYLOAD) -> bytes:
    out = io.BytesIO()
    with compress.ImageWriter(out, kind, level=1) as writer:
        writer.write(data)
    return out.getvalue()


def unpacked(data: bytes, kind: str, chunk: int = 1 << 16) -> bytes:
    parts = []
    with compress.open_stream(io.BytesIO(data), kind) as stream:
        buffer = bytearray(chunk)
        while got := stream.readinto(buffer):
            parts.append(bytes(buffer[:got]))
            if got < chunk:             # a short read only at the end
                assert stream.readinto(buffer) == 0
    return b"".join(parts)


# --- compress.py ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip"])
def test_detect_by_magic_not_name(tmp_path: Path, kind: str) -> None:
    misnamed = tmp_path / "image.raw.gz"          # the name lies
    misnamed.write_bytes(packed(kind))
    assert compress.detect(misnamed) == kind
    assert compress.detect(packed(kind)[:6]) == kind


def test_detect_raw_and_skippable_zstd_frame() -> None:
    assert compress.detect(b"\x00" * 16) == "raw"
    assert compress.detect(b"") == "raw"
    skippable = b"\x5a\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta" + packed("zstd")
    assert compress.detect(skippable) == "zstd"
    assert unpacked(skippable, "zstd") == PAYLOAD


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip", "raw"])
def test_stream_round_trip_with_full_reads(kind: str) -> None:
    data = PAYLOAD if kind == "raw" else packed(kind)
    assert unpacked(data, kind, chunk=1 << 20) == PAYLOAD
    assert unpacked(data, kind, chunk=4093) == PAYLOAD


def test_concatenated_frames_streams_and_members() -> None:
    two = PAYLOAD[:100_000], PAYLOAD[100_000:]
    zstd = b"".join(zstandard.ZstdCompressor().compress(p) for p in two)
    xz = b"".join(lzma.compress(p) for p in two)
    gz = b"".join(gzip.compress(p) for p in two)
    for data, kind in ((zstd, "zstd"), (xz, "xz"), (gz, "gzip")):
        assert unpacked(data, kind) == PAYLOAD, kind


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip"])
def test_damaged_stream_is_named(kind: str) -> None:
    data = bytearray(packed(kind))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(compress.CompressedDataError, match=f"the {kind} image .*damaged"):
        unpacked(bytes(data), kind)


@pytest.mark.parametrize("kind", ["xz", "gzip"])
def test_truncated_stream_is_an_error(kind: str) -> None:
    with pytest.raises(compress.CompressedDataError, match="truncated"):
        unpacked(packed(kind)[:-20], kind)


@pytest.mark.parametrize("cut", [1, 3, 200, 2000])
def test_truncated_zstd_is_an_error(cut: int) -> None:
    # (python-zstandard's own reader would end early without a word)
    with pytest.raises(compress.CompressedDataError, match="truncated"):
        unpacked(packed("zstd")[:-cut], "zstd")


def test_bytes_after_the_frames_are_an_error() -> None:
    with pytest.raises(compress.CompressedDataError, match="no zstd frame at byte"):
        unpacked(packed("zstd") + b"GARBAGE!", "zstd")
    with pytest.raises(compress.CompressedDataError, match="3 stray bytes at the end"):
        unpacked(packed("zstd") + b"\x28\xb5\x2f", "zstd")


def test_zero_frames_are_skipped_undecoded_and_read_as_zeros() -> None:
    out = io.BytesIO()
    with compress.ImageWriter(out, "zstd", level=1) as writer:
        writer.write(PAYLOAD)
        writer.write_zeros(3 * compress.ZERO_FRAME + 5)   # three ready-made frames + 5
        writer.write(PAYLOAD)
    data = out.getvalue()
    assert len(data) < 2 * len(PAYLOAD) + 3 * 4096       # the frames are small
    with compress.open_stream(io.BytesIO(data), "zstd") as stream:
        head = bytearray(len(PAYLOAD))
        assert stream.readinto(head) == len(PAYLOAD) and head == PAYLOAD
        assert stream.skip(2 * compress.ZERO_FRAME) == 2 * compress.ZERO_FRAME
        zeros = bytearray(compress.ZERO_FRAME + 5)
        assert stream.readinto(zeros) == len(zeros) and not any(zeros)
        assert stream.read(len(PAYLOAD) + 1) == PAYLOAD
        assert stream.zero_frames == 3                    # recognised, not decoded
    # the same bytes through python-zstandard alone: the same content
    whole = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                       read_across_frames=True).read()
    assert whole == PAYLOAD + bytes(3 * compress.ZERO_FRAME + 5) + PAYLOAD


def test_a_frame_that_only_looks_like_zeros_is_decoded() -> None:
    # the zstd CLI's frame of zeros then data: its blocks are not all RLE of 0
    data = zstandard.ZstdCompressor(level=1).compress(bytes(1 << 20) + b"tail")
    with compress.open_stream(io.BytesIO(data), "zstd") as stream:
        assert stream.read(2 << 20) == bytes(1 << 20) + b"tail"
        assert stream.zero_frames == 0
    ones = zstandard.ZstdCompressor(level=1).compress(b"\x01" * (1 << 20))  # RLE of 1
    with compress.open_stream(io.BytesIO(ones), "zstd") as stream:
        assert stream.read(2 << 20) == b"\x01" * (1 << 20) and stream.zero_frames == 0


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip", "raw"])
def test_skip_drops_exactly_what_it_says(kind: str) -> None:
    data = PAYLOAD if kind == "raw" else packed(kind)
    with compress.open_stream(io.BytesIO(data), kind) as stream:
        assert stream.skip(1000) == 1000
        assert stream.read(10) == PAYLOAD[1000:1010]
        assert stream.skip(len(PAYLOAD)) == len(PAYLOAD) - 1010   # up to the end
        assert stream.skip(1) == 0


def test_bad_level_is_refused() -> None:
    with pytest.raises(compress.ImagerError, match="zstd level 23 must be from 1 to 22"):
        compress.ImageWriter(io.BytesIO(), "zstd", level=23)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(compress.ImagerError, match="unknown compression 'lz4'"):
        compress.open_stream(io.BytesIO(b""), "lz4")


@pytest.mark.parametrize("kind", ["zstd", "xz", "gzip"])
def test_compress_sparse_file(tmp_path: Path, kind: str) -> None:
    raw = sparse(tmp_path / "r.raw", 300 * BS + 7, [*blocks(0, 5, 299), (300 * BS, b"tail!!!")])
    out = tmp_path / f"r.raw{compress.SUFFIXES[kind]}"
    compress.compress_file(raw, out, kind=kind, level=1)
    assert compress.detect(out) == kind
    assert unpacked(out.read_bytes(), kind) == raw.read_bytes()


def test_long_holes_become_ready_made_zstd_frames(tmp_path: Path) -> None:
    hole = 2 * compress.ZERO_FRAME + 12345
    raw = sparse(tmp_path / "r.raw", hole + 2 * BS, [(hole, block(1) + block(2))])
    out = tmp_path / "r.zst"
    compress.compress_file(raw, out)
    data = out.read_bytes()
    assert len(data) < 20_000                              # holes cost about nothing
    assert data.count(compress._zero_frame(3)) == 2        # two ready-made frames
    assert unpacked(data, "zstd", chunk=1 << 22) == raw.read_bytes()


def test_writer_without_data_makes_an_empty_stream() -> None:
    for kind in ("zstd", "xz", "gzip"):
        out = io.BytesIO()
        with compress.ImageWriter(out, kind) as writer:
            writer.write_zeros(10)
        assert unpacked(out.getvalue(), kind) == bytes(10), kind
        out = io.BytesIO()
        compress.ImageWriter(out, kind).close()
        assert unpacked(out.getvalue(), kind) == b"", kind


# --- create ------------------------------------------------------------------

def test_create_makes_image_bmap_and_manifest(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    built = create(raw, tmp_path / "out", name="debian12-bureau", version="2026.1",
                   profile="bureau", level=1)
    files, m = built.files, built.manifest
    assert [p.name for p in files.all() if p.exists()] == [
        "debian12-bureau-2026.1.img.zst", "debian12-bureau-2026.1.bmap",
        "debian12-bureau-2026.1.manifest.json"]
    assert not built.signed
    assert compress.detect(files.image) == "zstd"
    assert unpacked(files.image.read_bytes(), "zstd") == raw.read_bytes()
    ours = bm.read(files.bmap)
    assert ours == bmap_of(raw)
    assert json.loads(files.manifest.read_text()) == m
    assert m["name"] == "debian12-bureau" and m["version"] == "2026.1"
    assert m["profile"] == "bureau" and m["format"] == "imager-image/1"
    assert (m["image_size"], m["mapped_bytes"], m["block_size"]) == \
        (raw.stat().st_size, ours.mapped_bytes, BS)
    assert m["image"] == {"file": files.image.name, "compression": "zstd",
                          "size": files.image.stat().st_size,
                          "sha256": hashlib.sha256(files.image.read_bytes()).hexdigest()}
    assert m["bmap"]["sha256"] == hashlib.sha256(files.bmap.read_bytes()).hexdigest()
    assert m["built"].endswith("Z") and m["imager_version"] == __version__


def test_create_signs_with_the_station_key(tmp_path: Path, settings: Settings) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    keys = station_keys(settings)
    built = create(raw, tmp_path / "out", name="img", version="1", keys=keys)
    assert built.signed
    checks = Checks()
    envelope = read_envelope(built.files.signed.read_bytes(), checks)
    assert verify_envelope(envelope, Trust([keys.station_cert]), checks) == built.manifest


def _bytes_read() -> int:
    """Bytes this process has read through read() calls so far (/proc/self/io rchar)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_create_reads_only_mapped_data(tmp_path: Path) -> None:
    # 8 GiB apparent, 1 MiB of data: holes are neither read nor compressed
    raw = sparse(tmp_path / "big.raw", 8 << 30, [(1 << 30, block(1) * 256),
                                                 ((8 << 30) - BS, block(2))])
    before = _bytes_read()
    built = create(raw, tmp_path / "out", name="big", version="1")
    assert _bytes_read() - before < 64 << 20                 # 8 GiB of holes never read
    assert built.files.image.stat().st_size < 300_000       # ~2 KiB per 64 MiB of holes
    assert [(r.first, r.last) for r in bm.read(built.files.bmap).ranges] == \
        [(262144, 262399), ((8 << 30) // BS - 1, (8 << 30) // BS - 1)]


def test_create_reports_progress(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    seen: list[tuple[int, int]] = []
    create(raw, tmp_path / "out", name="img", version="1",
           progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (raw.stat().st_size, raw.stat().st_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(("name", "version", "message"), [
    ("../evil", "1", "name '../evil' must start with a letter"),
    ("ok", "1/2", "version '1/2'"),
    ("", "1", "name ''"),
])
def test_create_refuses_bad_names(tmp_path: Path, name: str, version: str,
                                  message: str) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    with pytest.raises(UsageError, match=re.escape(message)):
        create(raw, tmp_path / "out", name=name, version=version)


def test_create_refuses_missing_empty_or_existing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nothing.raw"):
        create(tmp_path / "nothing.raw", tmp_path, name="a", version="1")
    (tmp_path / "empty.raw").touch()
    with pytest.raises(UsageError, match="not a raw disk image"):
        create(tmp_path / "empty.raw", tmp_path, name="a", version="1")
    raw = sample_raw(tmp_path / "sample.raw")
    create(raw, tmp_path / "out", name="a", version="1")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    with pytest.raises(UsageError, match="already exists .* another --version"):
        create(raw, tmp_path / "out", name="a", version="1")
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before


def test_failed_create_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = sample_raw(tmp_path / "sample.raw")

    def broken(*args: object) -> None:
        raise UsageError("disk full")
    monkeypatch.setattr("imager.imaging.create.write_manifest", broken)
    with pytest.raises(UsageError, match="disk full"):
        create(raw, tmp_path / "out", name="a", version="1")
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_create_says_when_it_cannot_sign(tmp_path: Path) -> None:
    raw = sample_raw(tmp_path / "sample.raw")
    data = tmp_path / "data"
    out = imager(data, "image", "create", str(raw), "--name", "img", "--version", "1",
                 "--profile", "bureau")
    assert "Image créée / image created: img 1" in out.stdout
    assert "non signé" in out.stdout and "imager keys show" in out.stdout
    assert "compression: 100 %" in out.stderr
    assert (data / "images" / "img-1.img.zst").exists()
    imager(data, "keys", "show")
    out = imager(data, "image", "create", str(raw), "--name", "img", "--version", "2",
                 "--out", str(tmp_path / "elsewhere"))
    assert "non signé" not in out.stdout
    assert (tmp_path / "elsewhere" / "img-2.manifest.signed.json").exists()
    bad = imager(data, "image", "create", str(tmp_path / "none.raw"), "--name", "x",
                 "--version", "1", check=False)
    assert bad.returncode == 2 and "none.raw" in bad.stderr
