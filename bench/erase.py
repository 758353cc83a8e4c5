#!/usr/bin/env python3
"""Erase throughput against its peers, measured in one run on one loop device.

    sudo .venv/bin/python bench/erase.py [--size-gib 2] [--repeat 3] [--no-nwipe]

One sparse file, one loop device (direct I/O, so writes reach the disk, not
only the page cache). Each contender runs `--repeat` times, interleaved; ratios
are of medians (minima shown beside). Printed: seconds, MB/s, and the ratios
the issue sets targets for:
  imager zero pass / dd if=/dev/zero bs=4M oflag=direct conv=fsync   (<= 1.10)
  nwipe --method=zero / imager zero pass                            (>= 3)
  imager random pass / imager zero pass                             (<= 1.3)
  imager full verify / dd of=/dev/null bs=4M iflag=direct           (<= 1.10)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imager.erase.overwrite import write_pass  # noqa: E402
from imager.erase.patterns import Keystream, Repeating  # noqa: E402
from imager.erase.progress import NullSink  # noqa: E402
from imager.erase.verify import verify  # noqa: E402
from imager.host.blockdev import open_device  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def sh(*argv: str) -> None:
    # dd exits 1 at the end of a block device ("No space left"): that is the end.
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def dd_write(dev: str) -> None:
    sh("dd", "if=/dev/zero", f"of={dev}", "bs=4M", "oflag=direct", "conv=fsync",
       "status=none")


def dd_read(dev: str) -> None:
    sh("dd", f"if={dev}", "of=/dev/null", "bs=4M", "iflag=direct", "status=none")


def nwipe(dev: str) -> None:
    sh("nwipe", "--method=zero", "--verify=off", "--noblank", "--nogui", "--autonuke",
       "--nowait", dev)


def imager_pass(dev: str, source: object) -> None:
    with open_device(dev, write=True) as d:
        write_pass(d, source, index=0, pattern="bench", sink=NullSink())  # type: ignore[arg-type]


def imager_verify(dev: str) -> None:
    with open_device(dev, write=False) as d:
        res = verify(d, Repeating(b"\0"), mode="full", pattern="zero", index=0,
                     sink=NullSink())
    if not res.ok:
        raise SystemExit(f"verification failed at {res.first_bad_offset}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gib", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-nwipe", action="store_true", help="skip nwipe (slow)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark attaches a loop device")
    size = int(args.size_gib * (1 << 30)) // (1 << 20) * (1 << 20)
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        img = Path(tmp) / "bench.img"
        img.touch()
        os.truncate(img, size)
        dev = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(img)],
                             check=True, capture_output=True, text=True).stdout.strip()
        try:
            return run(dev, size, args)
        finally:
            subprocess.run(["losetup", "-d", dev], check=False)


def run(dev: str, size: int, args: argparse.Namespace) -> int:
    dd_write(dev)  # warm-up: allocate every block of the sparse file once
    contenders: dict[str, Callable[[], object]] = {
        "dd zero write": lambda: dd_write(dev),
        "imager zero pass": lambda: imager_pass(dev, Repeating(b"\0")),
        "imager random pass": lambda: imager_pass(dev, Keystream(os.urandom(32))),
        "dd direct read": lambda: dd_read(dev),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    times["imager full verify"] = []
    for _ in range(args.repeat):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
        imager_pass(dev, Repeating(b"\0"))
        times["imager full verify"].append(timed(lambda: imager_verify(dev)))
    if not args.no_nwipe:
        times["nwipe zero"] = [timed(lambda: nwipe(dev))]
    print(f"device {dev}, {size / (1 << 30):.2f} GiB, loop direct-io, {args.repeat} "
          "interleaved runs each (nwipe: 1 run)")
    print(f"  {'':22s} {'min s':>8s} {'median s':>9s} {'max s':>8s} {'median MB/s':>12s}")
    for name, secs in times.items():
        med = statistics.median(secs)
        print(f"  {name:22s} {min(secs):8.3f} {med:9.3f} {max(secs):8.3f} "
              f"{size / med / 1e6:12.0f}")
    ok = True
    for label, num, den, op, target in RATIOS:
        if num not in times or den not in times:
            continue
        value = statistics.median(times[num]) / statistics.median(times[den])
        best = min(times[num]) / min(times[den])
        met = value <= target if op == "<=" else value >= target
        ok &= met
        print(f"  ratio {label:26s} median {value:6.2f}  min {best:6.2f}  "
              f"(target {op} {target})  {'ok' if met else 'MISSED'}")
    return 0 if ok else 1


RATIOS = (
    ("imager zero / dd write", "imager zero pass", "dd zero write", "<=", 1.10),
    ("imager random / zero", "imager random pass", "imager zero pass", "<=", 1.3),
    ("imager verify / dd read", "imager full verify", "dd direct read", "<=", 1.10),
    ("nwipe / imager zero", "nwipe zero", "imager zero pass", ">=", 3.0),
)


if __name__ == "__main__":
    sys.exit(main())
