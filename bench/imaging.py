#!/usr/bin/env python3
"""Deployment throughput against its peers, measured in one run on loop devices.

    sudo .venv/bin/python bench/imaging.py [--size-gib 4] [--mapped-gib 1] [--extents 400]

A sparse raw image of --size-gib with about --mapped-gib of data in --extents
scattered extents (text from Python's sources, ELF binaries and libraries,
some random bytes and some zeros: compressible about like an OS), its bmap
(v2.0, sha256) and its zstd file (level 3). Targets are loop devices over
sparse files on the same file system, in direct-I/O mode (--buffered-loop for
the default mode), discarded (blkdiscard) and with the caches dropped before
every run. Contenders, once a round (--rounds, interleaved; medians):

  imager deploy, verify none       write only
  imager deploy, verify full       write, fsync, read every range back (O_DIRECT)
                                   and compare it with the buffers written, the
                                   read-back following the writes' checkpoints
  imager deploy, verify sample     the same, reading back a seeded 5 % of the ranges
  imager read-back alone           verify_targets() on the target just written
  bmaptool copy --bmap B I.zst T   Debian bmap-tools: writes mapped ranges, no read-back
  zstdcat I.zst | dd of=T bs=4M iflag=fullblock oflag=direct conv=fsync
  imager deploy to 4 targets at once (full) vs the same 4, one after another

Ratios of medians the issue sets targets for: imager(write+verify)/bmaptool
(<= 1.0), dd/imager (>= 3; shown with and without the read-back). Loop
devices and files are removed on exit, failed or not.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imager.imaging import bmap as bm  # noqa: E402
from imager.imaging import compress  # noqa: E402
from imager.imaging.deploy import DeployResult, deploy, verify_targets  # noqa: E402
from imager.imaging.source import open_source  # noqa: E402
from imager.settings import Settings  # noqa: E402

MiB, GiB, BS = 1 << 20, 1 << 30, 4096


# --- the image -------------------------------------------------------------------

def pool(paths: Iterator[Path], limit: int) -> bytes:
    """Up to `limit` bytes read from the files `paths`."""
    parts, size = [], 0
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def pools() -> dict[str, bytes]:
    lib = Path(os.__file__).parent
    binaries = (p for d in (Path("/usr/bin"), Path("/usr/lib/x86_64-linux-gnu"))
                for p in sorted(d.iterdir()) if p.is_file() and not p.is_symlink())
    return {"text": pool(sorted(lib.rglob("*.py")), 48 * MiB),
            "binary": pool(binaries, 96 * MiB)}


def content(rnd: random.Random, size: int, sources: dict[str, bytes]) -> bytes:
    """`size` bytes: pieces of text 40%, binaries 40%, random 15%, zeros 5%."""
    out, left = [], size
    while left:
        n = min(left, rnd.randrange(64 << 10, 1 << 20))
        kind = rnd.choices(("text", "binary", "random", "zero"), (40, 40, 15, 5))[0]
        if kind == "random":
            out.append(rnd.randbytes(n))
        elif kind == "zero":
            out.append(bytes(n))
        else:
            src = sources[kind]
            start = rnd.randrange(0, len(src) - n)
            out.append(src[start:start + n])
        left -= n
    return b"".join(out)


def make_image(work: Path, size: int, mapped: int, extents: int,
               seed: int) -> tuple[Path, Path, bm.Bmap]:
    """(raw, zstd file, bmap): extents of varied sizes, one in each slot of the image."""
    rnd, sources = random.Random(seed), pools()
    weights = [rnd.lognormvariate(0, 1.2) for _ in range(extents)]
    slot = size // extents // BS * BS
    raw = work / "image.raw"
    with open(raw, "wb") as fh:
        fh.truncate(size)
        for i, w in enumerate(weights):
            length = max(BS, min(slot - BS, int(mapped * w / sum(weights))) // BS * BS)
            offset = i * slot + rnd.randrange(0, (slot - length) // BS + 1) * BS
            os.pwrite(fh.fileno(), content(rnd, length, sources), offset)
    ranges = bm.map_file(raw)
    bmap = bm.make(image_size=size, block_size=BS, ranges=bm.checksum_ranges(
        raw, ranges, block_size=BS, image_size=size))
    (work / "image.bmap").write_text(bm.render(bmap))
    image = work / "image.raw.zst"
    compress.compress_file(raw, image, kind="zstd")
    return raw, image, bmap


# --- targets -----------------------------------------------------------------------

@contextmanager
def loops(work: Path, count: int, size: int, *, direct: bool) -> Iterator[list[str]]:
    """`count` loop devices over sparse files; always detached."""
    devs: list[str] = []
    try:
        for i in range(count):
            backing = work / f"target{i}.img"
            with open(backing, "wb") as fh:
                fh.truncate(size)
            argv = ["losetup", "--find", "--show", f"--direct-io={'on' if direct else 'off'}"]
            devs.append(subprocess.run(argv + [str(backing)], check=True, text=True,
                                       capture_output=True).stdout.strip())
        yield devs
    finally:
        for dev in devs:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


def fresh(devs: list[str], *, discard: bool = True) -> None:
    """Targets emptied (holes again in their files) and every cache dropped."""
    for dev in devs if discard else ():
        subprocess.run(["blkdiscard", dev], check=True)
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(devs: list[str], fn: Callable[[], object], *,
          discard: bool = True) -> tuple[float, object]:
    fresh(devs, discard=discard)
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


# --- contenders ---------------------------------------------------------------------

def imager(image: Path, bmap: bm.Bmap, devs: list[str], verify: str) -> DeployResult:
    result = deploy(open_source(image), bmap, devs, settings=Settings.from_env(),
                    verify=verify)
    if not result.ok:
        raise SystemExit(f"imager deploy failed: {[t.error for t in result.targets]}")
    return result


def read_back_alone(bmap: bm.Bmap, devs: list[str]) -> None:
    for check in verify_targets(bmap, devs):
        if not check.ok:
            raise SystemExit(f"read-back failed: {check.error}")


def bmaptool(image: Path, bmap_file: Path, dev: str) -> None:
    subprocess.run(["bmaptool", "-q", "copy", "--bmap", str(bmap_file), str(image), dev],
                   check=True)


def dd(image: Path, dev: str) -> None:
    shell = (f"zstdcat -q '{image}' | dd of={dev} bs=4M iflag=fullblock oflag=direct "
             "conv=fsync status=none")
    subprocess.run(["bash", "-o", "pipefail", "-c", shell], check=True)


class Rounds:
    """Every contender once per round, rounds interleaved; medians reported."""

    def __init__(self, image: Path, bmap: bm.Bmap, work: Path, devs: list[str]) -> None:
        self.image, self.bmap, self.work, self.devs = image, bmap, work, devs
        self.times: dict[str, list[float]] = {}
        self.notes: dict[str, str] = {}

    def add(self, name: str, seconds: float, note: str = "") -> None:
        self.times.setdefault(name, []).append(seconds)
        self.notes[name] = note

    def round(self) -> None:
        image, bmap, devs, one = self.image, self.bmap, self.devs, self.devs[:1]
        self.add(NONE, timed(one, lambda: imager(image, bmap, one, "none"))[0])
        seconds, res = timed(one, lambda: imager(image, bmap, one, "full"))
        target = res.targets[0]  # type: ignore[attr-defined]
        self.add(FULL, seconds, f"write {target.write_seconds:.2f} s, then read-back "
                                f"{target.verify_seconds:.2f} s (it runs behind the writes)")
        seconds, res = timed(one, lambda: imager(image, bmap, one, "sample"))
        self.add(SAMPLE, seconds, f"{res.targets[0].verified_bytes / MiB:.0f} MiB "  # type: ignore[attr-defined]
                                  "read back")
        self.add(ALONE, timed(one, lambda: read_back_alone(bmap, one), discard=False)[0],
                 "the same target read again, caches dropped")
        self.add(BMAPTOOL, timed(one, lambda: bmaptool(image, self.work / "image.bmap",
                                                       one[0]))[0])
        self.add(DD, timed(one, lambda: dd(image, one[0]))[0], "writes the whole image")
        self.add(PARALLEL, timed(devs, lambda: imager(image, bmap, devs, "full"))[0], "all 4")
        fresh(devs)
        self.add(SEQUENTIAL, sum(timed([d], lambda d=d: imager(image, bmap, [d], "full"))[0]
                                 for d in devs), "all 4")

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def table(self) -> None:
        rounds = len(self.times[NONE])
        print(f"{'contender':<48} {'median':>8} {'min':>8} {'mapped/s':>10}   ({rounds} rounds)")
        for name, values in self.times.items():
            targets = 4 if name in (PARALLEL, SEQUENTIAL) else 1
            speed = targets * self.bmap.mapped_bytes / self.median(name) / 1e6
            print(f"{name:<48} {self.median(name):7.2f}s {min(values):7.2f}s "
                  f"{speed:6.0f} MB/s  {self.notes[name]}")
        print()
        m = self.median
        print(f"imager(write+verify) / bmaptool = {m(FULL) / m(BMAPTOOL):.2f}   (target <= 1.0)")
        print(f"imager(write only)   / bmaptool = {m(NONE) / m(BMAPTOOL):.2f}")
        print(f"dd / imager(write+verify)       = {m(DD) / m(FULL):.2f}   (target >= 3)")
        print(f"dd / imager(write + sample)     = {m(DD) / m(SAMPLE):.2f}")
        print(f"dd / imager(write only)         = {m(DD) / m(NONE):.2f}")
        moved = 2 * self.bmap.mapped_bytes / self.bmap.image_size
        print(f"bytes moved, imager(write+verify) / dd = {moved:.2f}: the bound of that "
              f"ratio is about {1 / moved:.1f} on a disk that reads as fast as it writes")
        print(f"sequential 4 / parallel 4       = {m(SEQUENTIAL) / m(PARALLEL):.2f}")


NONE = "imager deploy, verify none (write only)"
FULL = "imager deploy, verify full (write + read-back)"
SAMPLE = "imager deploy, verify sample (5 %)"
ALONE = "imager read-back alone (verify_targets, full)"
BMAPTOOL = "bmaptool copy (no read-back)"
DD = "zstdcat | dd bs=4M oflag=direct"
PARALLEL = "imager, 4 targets at once (full)"
SEQUENTIAL = "imager, 4 targets one after another (full)"


def run(args: argparse.Namespace, work: Path) -> None:
    size, mapped = int(args.size_gib * GiB), int(args.mapped_gib * GiB)
    t0 = time.perf_counter()
    raw, image, bmap = make_image(work, size, mapped, args.extents, args.seed)
    raw.unlink()
    print(f"image: {bm.human_size(size)} raw, {bm.human_size(bmap.mapped_bytes)} mapped in "
          f"{len(bmap.ranges)} ranges, zstd file {bm.human_size(image.stat().st_size)} "
          f"(made in {time.perf_counter() - t0:.0f} s)")
    mode = "buffered" if args.buffered_loop else "direct-I/O"
    print(f"targets: loop devices ({mode}) over sparse files in {work}; caches dropped and "
          "targets discarded before each run\n")
    with loops(work, 4, size, direct=not args.buffered_loop) as devs:
        rounds = Rounds(image, bmap, work, devs)
        for _ in range(args.rounds):
            rounds.round()
    rounds.table()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=4.0)
    ap.add_argument("--mapped-gib", type=float, default=1.0)
    ap.add_argument("--extents", type=int, default=400)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3, help="every contender once a round")
    ap.add_argument("--dir", type=Path, default=Path("/var/tmp"),
                    help="where the image and the targets' files go (one file system)")
    ap.add_argument("--buffered-loop", action="store_true",
                    help="loop devices in their default buffered mode")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (loop devices, drop_caches)")
    for tool in ("bmaptool", "zstdcat", "dd", "losetup", "blkdiscard"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool} (see scripts/install --test)")
    work = Path(tempfile.mkdtemp(prefix="imager-bench-", dir=args.dir))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
