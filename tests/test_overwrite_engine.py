"""The overwrite engine and its verification on real loop devices."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from imager.erase.engine import OverwriteEngine
from imager.erase.methods import METHODS, make_plan
from imager.erase.patterns import source_for
from imager.erase.progress import NullSink
from imager.erase.verify import sample_ranges, verify
from imager.host.blockdev import open_device

MiB = 1 << 20
SIZE = 64 * MiB


def _erase(dev_path: str, method: str, mode: str = "full"):  # type: ignore[no-untyped-def]
    plan = make_plan(method, mode)  # type: ignore[arg-type]
    with open_device(dev_path, write=True) as dev:
        assert dev.direct and dev.is_block
        return plan, OverwriteEngine().execute(dev, plan, sink=NullSink())


def _dirty(path: str, size: int) -> None:
    """Fill the device with non-zero junk, as a donor's drive would be."""
    with open(path, "r+b") as fh:
        block = os.urandom(MiB)
        for off in range(0, size, MiB):
            fh.seek(off)
            fh.write(block)
        os.fsync(fh.fileno())


def _read(path: str, offset: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(n)


@pytest.mark.root
@pytest.mark.parametrize("method", [*METHODS, "pattern:abcdef", "ones,pattern:5a"])
def test_every_method_overwrites_the_whole_device(loopdev: Callable[..., str],
                                                  method: str) -> None:
    dev = loopdev(SIZE + 4096 * 3)  # size not a multiple of the chunk
    _dirty(dev, SIZE)
    plan, ex = _erase(dev, method)
    assert ex.outcome == "erased", ex.reason
    assert len(ex.passes) == len(plan.passes)
    assert all(p.bytes_written == SIZE + 4096 * 3 for p in ex.passes)
    expected = source_for(plan.passes[-1])
    for off in (0, 5 * MiB + 512, SIZE + 4096 * 2):
        assert _read(dev, off, 4096) == expected.expected(4096, off)
    assert ex.verification and ex.verification.coverage == 1.0


@pytest.mark.root
@pytest.mark.parametrize("corrupt_at", [0, 17 * MiB + 3 * 512, SIZE - 512])
def test_full_verification_finds_one_corrupted_sector(loopdev: Callable[..., str],
                                                      corrupt_at: int) -> None:
    dev = loopdev(SIZE)
    plan, ex = _erase(dev, "random", "none")
    assert ex.outcome == "unverified"
    with open(dev, "r+b") as fh:  # behind the engine's back: every byte of one sector flipped
        fh.seek(corrupt_at)
        flipped = bytes(b ^ 0xFF for b in fh.read(512))
        fh.seek(corrupt_at)
        fh.write(flipped)
        os.fsync(fh.fileno())
    with open_device(dev, write=False) as d:
        res = verify(d, source_for(plan.passes[-1]), mode="full", pattern="random",
                     index=1, sink=NullSink())
    assert not res.ok
    assert res.first_bad_offset == corrupt_at
    assert res.mismatched_sectors == 1


@pytest.mark.root
def test_sampled_verification_finds_a_corrupted_sector_it_samples(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(SIZE)
    plan, ex = _erase(dev, "zero", "sample")
    assert ex.outcome == "erased" and ex.verification
    assert ex.verification.coverage >= 0.10 and ex.verification.subsections == 1000
    seed = bytes.fromhex(plan.verify_seed or "")
    windows = sample_ranges(SIZE, 4096, seed)
    inner = windows[len(windows) // 2]  # a pseudorandom window, not an edge
    for target in (inner[0] + inner[1] - 512, SIZE - 512):
        with open(dev, "r+b") as fh:
            fh.seek(target)
            fh.write(b"\xde\xad" * 256)
            os.fsync(fh.fileno())
        with open_device(dev, write=False) as d:
            res = verify(d, source_for(plan.passes[-1]), mode="sample", pattern="zero",
                         index=1, sink=NullSink(), seed=plan.verify_seed)
        assert not res.ok and res.first_bad_offset == target
        assert res.seed == plan.verify_seed
        _erase(dev, "zero", "none")


@pytest.mark.root
def test_engine_on_an_image_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(3 * MiB))
    plan = make_plan("dod-3pass", "full")
    with open_device(str(img), write=True) as dev:
        ex = OverwriteEngine().execute(dev, plan, sink=NullSink())
    assert ex.outcome == "erased"
    assert img.read_bytes() == source_for(plan.passes[-1]).expected(3 * MiB, 0)
