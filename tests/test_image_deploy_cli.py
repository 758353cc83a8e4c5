"""`imager image deploy` with the registry, on real loop devices: only drives
erased and verified before receive the image (one refused drive, nothing
written anywhere), two drives at once from one stream, each read back,
grown and customised, each deployment recorded; a corrupt image leaves the
drive image_failed with its next step; lab use names the machine."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import imager
from conftest import need_root
from test_image_after import DISK, GPT, build_image

pytestmark = pytest.mark.root


def _drive(data: Path, dev: str) -> dict[str, Any]:
    """The registry's drive for loop device `dev` (its identity is its backing file)."""
    backing = Path(f"/sys/block/{Path(dev).name}/loop/backing_file").read_text().strip()
    rows = json.loads(imager(data, "drives", "list", "--json").stdout)
    return next(r for r in rows if r["identity"] == f"loop:{backing}")


def _deployments(data: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data / "registry.sqlite3") as db:
        return db.execute("SELECT drive_id, ok, verify, error, hostname, erasure_job_id "
                          "FROM deployments ORDER BY id").fetchall()


def _head(dev: str, size: int = 1 << 20) -> bytes:
    with open(dev, "rb") as fh:
        return fh.read(size)


def test_deploy_only_to_erased_drives_recorded_and_customised(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    need_root()
    data = tmp_path / "data"
    raw = build_image(tmp_path, GPT)
    imager(data, "image", "create", str(raw), "--name", "bureau", "--version", "2026.11")
    imager(data, "technicians", "add", "Lina Martin")
    one, two, never = (loopdev(DISK) for _ in range(3))
    imager(data, "erase", one, two, "--method", "nist-clear")

    refused = imager(data, "image", "deploy", "bureau", one, never, check=False)
    assert refused.returncode == 2 and "has no erasure on record" in refused.stderr
    assert _head(one) == bytes(1 << 20) and not _deployments(data)   # nothing written
    assert _drive(data, one)["state"] == "erased"

    done = imager(data, "image", "deploy", "bureau", one, two, "--technician", "Lina Martin",
                  "--json")
    rows = json.loads(done.stdout)
    assert [r["ok"] for r in rows] == [True, True]
    assert all(r["verify"] == "full" and r["verified_bytes"] == r["written_bytes"] > 0
               and not r["mismatches"] for r in rows)
    assert all(r["after"]["grown"] and r["after"]["machine_id_reset"] for r in rows)
    assert _head(one, 512 * 34) == _head(two, 512 * 34) != bytes(512 * 34)
    for dev in (one, two):
        drive = json.loads(imager(data, "drives", "show", str(_drive(data, dev)["id"]),
                                  "--json").stdout)
        moves = [(e["from"], e["to"], e["actor"]) for e in drive["history"]
                 if e["kind"] == "move"]
        assert moves[-2:] == [("erased", "imaging", "Lina Martin"),
                              ("imaging", "imaged", "Lina Martin")]
    assert [(ok, verify, error) for _, ok, verify, error, _, _ in _deployments(data)] == [
        (1, "full", None)] * 2
    assert all(erasure is not None for *_, erasure in _deployments(data))

    lab = imager(data, "image", "deploy", "bureau", never, "--allow-unerased",
                 "--asset-tag", "RS05-0042", "--verify", "sample")
    assert "imaged, verified" in lab.stdout
    *_, hostname, erasure = _deployments(data)[-1]
    assert (hostname, erasure) == ("pc-rs05-0042", None)
    with sqlite3.connect(data / "registry.sqlite3") as db:
        [detail] = db.execute("SELECT detail FROM deployments ORDER BY id DESC LIMIT 1").fetchone()
    assert json.loads(detail)["sample_seed"]      # the sample can be chosen again
    assert _drive(data, never)["state"] == "inventoried"


def test_corrupt_image_leaves_the_drive_image_failed(
        tmp_path: Path, loopdev: Callable[..., str]) -> None:
    need_root()
    data = tmp_path / "data"
    imager(data, "image", "create", str(build_image(tmp_path, GPT)), "--name", "bureau",
           "--version", "1")
    dev = loopdev(DISK)
    imager(data, "erase", dev, "--method", "nist-clear")
    packed = next((data / "images").glob("bureau-1.img.zst"))
    blob = bytearray(packed.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    packed.write_bytes(bytes(blob))

    failed = imager(data, "image", "deploy", "bureau", dev, "--json", check=False)
    assert failed.returncode == 1
    [row] = json.loads(failed.stdout)
    assert not row["ok"] and row["error"]
    drive = _drive(data, dev)
    assert drive["state"] == "image_failed" and "relancer" in drive["next_step"]["fr"]
    [(_, ok, _, error, _, _)] = _deployments(data)
    assert ok == 0 and error == row["error"]
