"""Compressed images (zstd, xz, gzip told apart by magic bytes, streamed back
with their errors named) and `imager image create`."""

from __future__ import annotations

import gzip
import io
import lzma
from pathlib import Path

import pytest
import zstandard
from test_bmap import BS, block, blocks, sparse

from imager.imaging import compress

PAYLOAD = b"".join(block(i) for i in range(64)) + bytes(300_000) + b"end"


def packed(kind: str, data: bytes = PAYLOAD) -> bytes:
    out = io.BytesIO()
    with compress.open_writer(out, kind, level=1) as writer:
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


def test_truncated_zstd_reads_short() -> None:
    # python-zstandard ends the stream without an error: the reader sees fewer
    # bytes than the image size (bmap.mapped_chunks refuses that, see test_bmap)
    assert len(unpacked(packed("zstd")[:-200], "zstd")) < len(PAYLOAD)


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
    if kind == "zstd":                    # the frame says its size (zstd -l)
        assert zstandard.frame_content_size(out.read_bytes()) == raw.stat().st_size
