"""Shared fixtures: real loop devices over sparse files, and the CI rule.

When CI=true, a test that needs root, loop devices, a tool or a server must
fail instead of skipping: `need()` does that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from imager.host.run import RunResult
from imager.model import ErasePlan, EraseReport
from imager.registry.jobs import RegistryJobStore
from imager.settings import Settings
from imager.store.db import Registry

if TYPE_CHECKING:
    from lab.vm import LabVM
    from playwright.sync_api import Browser, Page

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, why: str) -> None:
    """Skip the test when `condition` is false, or fail it under CI=true."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true and this test cannot run: {why}")
    pytest.skip(why)


def need_root() -> None:
    need(os.geteuid() == 0, "needs root (loop devices)")
    need(Path("/dev/loop-control").exists(), "needs /dev/loop-control")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"needs the tool {name!r} (see scripts/install)")
    return path or name


def read_recorded(path: Path) -> str:
    """A recorded tool output from tests/data without its '#' provenance header."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    body = [ln for ln in lines if not ln.startswith("#")]
    return "".join(body)


def replay(path: Path) -> RunResult:
    """A recording replayed as the tool's result (exit status, stderr, stdout)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    status = next((ln for ln in lines if ln.startswith("# Exit status:")), "# Exit status: 0")
    stderr = "\n".join(ln.removeprefix("# stderr: ") for ln in lines
                       if ln.startswith("# stderr: "))
    return RunResult(("recorded", path.name), int(status.split(":")[1]), read_recorded(path),
                     stderr, 0.0)


DATA = Path(__file__).parent / "data"
HEAD = "0009"  # the latest registry migration


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", checkpoint_seconds=0.2)


@pytest.fixture
def registry(settings: Settings) -> Iterator[Registry]:
    reg = Registry.open(settings)
    try:
        yield reg
    finally:
        reg.close()


@contextmanager
def erase_job(settings: Settings, dev: str, plan: ErasePlan,
              ) -> Iterator[tuple[RegistryJobStore, int, EraseReport]]:
    """Create an erase job for `dev` with `plan`, run it to its end; yield the
    store (registry still open), the job id and the report."""
    from imager.inventory import lsblk
    from imager.jobs.erase import run_erase

    with Registry.open(settings) as reg:
        store = RegistryJobStore(reg)
        job_id = store.create_erase(lsblk.probe(dev, settings), plan)
        yield store, job_id, run_erase(store, job_id, settings, stop=threading.Event())


def in_threads(target: Callable[[], object], count: int) -> list[BaseException]:
    """Run `target` in `count` threads at once; return what they raised."""
    import threading

    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            target()
        except BaseException as exc:  # collected for the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


class LoopFactory:
    """Creates loop devices over sparse files and always detaches them."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.devices: list[str] = []

    def __call__(self, size: int, *, name: str | None = None, read_only: bool = False,
                 backing: Path | None = None) -> str:
        need_root()
        if backing is None:
            backing = self.base / (name or f"disk{len(self.devices)}.img")
            with open(backing, "wb") as fh:
                fh.truncate(size)
        argv = ["losetup", "--find", "--show"] + (["--read-only"] if read_only else [])
        dev = subprocess.run(argv + [str(backing)], check=True, capture_output=True,
                             text=True).stdout.strip()
        self.devices.append(dev)
        return dev

    def detach_all(self) -> None:
        for dev in reversed(self.devices):
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        self.devices.clear()


@pytest.fixture
def loopdev(tmp_path: Path) -> Iterator[Callable[..., str]]:
    factory = LoopFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.detach_all()


@pytest.fixture
def faultdisk(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """FaultDisk.start(...) with the CI rule applied and cleanup guaranteed."""
    need_root()
    from faultdisk import FaultDisk, missing_requirements

    missing = missing_requirements()
    need(missing is None, f"FaultDisk cannot run: {missing}")
    disks: list[FaultDisk] = []

    def start(size: int, bad: list[tuple[int, int]] = (), **kw: object) -> FaultDisk:
        disk = FaultDisk.start(tmp_path, size, bad, **kw)
        disks.append(disk)
        return disk

    try:
        yield start
    finally:
        for d in disks:
            d.close()


@pytest.fixture(scope="session")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabVM]:
    """The QEMU lab guest (tests/lab), booted once for every lab test."""
    from lab.build import missing_tools
    from lab.vm import LabVM

    need(os.geteuid() == 0, "the lab needs root (mmdebstrap --mode=root, chroot)")
    need(shutil.which("qemu-system-x86_64") is not None,
         "the lab needs qemu-system-x86 (see scripts/install)")
    missing = missing_tools()
    need(not missing, f"the lab build needs: apt-get install {' '.join(missing)}")
    with LabVM(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


@pytest.fixture(scope="session")
def dev(vm: LabVM) -> dict[str, str]:
    """Guest block device of each drive, by drive name."""
    return vm.device_paths()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, launched once per test module (tests/browser.py)."""
    from browser import chromium

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, web_url: str) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies) whose relative URLs go to
    `web_url`: the station of the test module, which defines that fixture."""
    from browser import new_page

    with new_page(browser, web_url) as fresh:
        yield fresh


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped test is a failed test, whoever skipped it."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"CI=true: this test skipped, which CI counts as a failure: " \
                          f"{report.longrepr}"
