"""NVMe Sanitize and Format engines: parsers on real recordings, the controller
topology from sysfs, and each engine's decisions on real loop devices with a
fake nvme-cli that answers from recordings (and really erases the loop device
when the "drive" accepts the command)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import DATA, read_recorded
from conftest import replay as recorded
from fakedrive import RecordingSink, fill

from imager.erase.nvme import (
    NvmeFormatEngine,
    NvmeSanitizeEngine,
    proves_new_sanitize,
    read_after_erase,
    refusal,
)
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import open_device
from imager.host.nvme import NvmeTopology, nvme_topology
from imager.host.run import RunResult
from imager.inventory.nvme import SanitizeLog, parse_id_ctrl, parse_id_ns, parse_sanitize_log
from imager.model import ErasePlan, MethodStep
from imager.settings import Settings

MiB = 1 << 20
REAL = DATA / "real" / "nvme"
LAB = DATA / "lab"
CTRL = "/dev/nvme7"  # the fake controller the tests' topology names


def real_log(name: str) -> SanitizeLog:
    return parse_sanitize_log(read_recorded(REAL / f"nvme-sanitize-log-{name}.txt"))


# Real sanitize logs (tests/data/real/nvme): Intel 660p drives.
COMPLETED = real_log("intel-660p-512gb-completed")          # SSTAT 0x101
CRYPTO_RUNNING = real_log("intel-660p-512gb-crypto-in-progress")
BLOCK_RUNNING = real_log("intel-660p-1tb-block-in-progress")
# Derived by a commented edit: the same completed log read just after the
# station wrote its canary markers. A drive implementing Global Data Erased
# clears bit 8 on any write, so SSTAT reads 0x001 instead of 0x101.
WRITTEN_SINCE = dataclasses.replace(COMPLETED, global_data_erased=False)
# Derived: status bits 2:0 edited from 001b (completed) to 011b (failed).
FAILED = dataclasses.replace(COMPLETED, status=3)

STATUS_TEXT = {0: "NVM Subsystem has never been sanitized.",
               1: "Most Recent Sanitize Command Completed Successfully.",
               2: "Sanitize in Progress.", 3: "Most Recent Sanitize Command Failed."}


def nvme_cli_json(log: SanitizeLog, devname: str = "nvme7") -> str:
    """What nvme-cli 2.x prints for `log` with -o json (json_sanitize_log in
    nvme-print-json.c: the log under the device name, SSTAT split into
    global_erased, no_cmplted_passes and "(N) text", FFFFFFFFh = no estimate)."""
    def est(value: int | None) -> int:
        return 0xFFFFFFFF if value is None else value
    body = {"sprog": log.sprog,
            "sstat": {"global_erased": int(bool(log.global_data_erased)),
                      "no_cmplted_passes": log.passes,
                      "status": f"({log.status}) {STATUS_TEXT[log.status]}"},
            "cdw10_info": log.cdw10 or 0, "time_over_write": est(log.overwrite_seconds),
            "time_block_erase": est(log.block_erase_seconds),
            "time_crypto_erase": est(log.crypto_erase_seconds)}
    return json.dumps({devname: body}, indent=2)


OK = RunResult(("nvme",), 0, "", "", 0.0)


class FakeNvme:
    """nvme-cli as the engines call it. `logs` answers successive sanitize-log
    reads (the last one repeats); `effect` runs on the device when the drive
    accepts sanitize/format, as the drive's own erase would."""

    def __init__(self, *, logs: list[SanitizeLog | RunResult] = (), sanitize: RunResult = OK,
                 fmt: RunResult = OK, id_ctrl: str = "",
                 effect: Callable[[str], None] | None = None, device: str = "") -> None:
        # The precheck reads the log once more, before the canaries are written.
        self.logs = [logs[0], *logs] if logs else []
        self.sanitize, self.fmt = sanitize, fmt
        self.id_ctrl, self.effect, self.device = id_ctrl, effect, device
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], *, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> RunResult:
        self.calls.append(list(argv))
        verb = argv[1]
        if verb == "sanitize-log":
            answer = self.logs.pop(0) if len(self.logs) > 1 else self.logs[0]
            if isinstance(answer, RunResult):
                return answer
            return RunResult(tuple(argv), 0, nvme_cli_json(answer), "", 0.0)
        if verb == "id-ctrl":
            return RunResult(tuple(argv), 0, self.id_ctrl, "", 0.0)
        result = {"sanitize": self.sanitize, "format": self.fmt}[verb]
        if result.ok and self.effect:
            self.effect(self.device)
        return result

    def verbs(self) -> list[str]:
        return [c[1] for c in self.calls]


def sanitize_plan(options: dict[str, str]) -> ErasePlan:
    step = MethodStep(f"nvme-sanitize-{options['action']}", engine="nvme-sanitize",
                      options=options, sanitization_class="purge",
                      technique=f"{options['action']}-erase")
    return ErasePlan(steps=(step,), verify="full", verify_seed="ab" * 16)


def sanitizer(options: dict[str, str], fake: FakeNvme, settings: Settings,
              namespaces: tuple[str, ...] = ()) -> NvmeSanitizeEngine:
    def topology(path: str) -> NvmeTopology:
        return NvmeTopology(path, CTRL, (path, *namespaces))
    return NvmeSanitizeEngine(options, runner=fake, sleep=lambda s: None, settings=settings,
                              topology=topology)


# --- parsers on recordings ------------------------------------------------

def test_sanitize_log_of_real_drives_in_progress_and_completed() -> None:
    assert BLOCK_RUNNING.in_progress and BLOCK_RUNNING.action == 2
    assert BLOCK_RUNNING.progress == pytest.approx(655 / 65536)
    assert BLOCK_RUNNING.block_erase_seconds is None  # 4294967295: no time period reported
    assert CRYPTO_RUNNING.in_progress and CRYPTO_RUNNING.action == 4
    assert COMPLETED.completed and COMPLETED.global_data_erased and COMPLETED.progress is None
    assert not COMPLETED.failed and COMPLETED.passes == 0


def test_sanitize_log_json_as_nvme_cli_versions_print_it() -> None:
    log = parse_sanitize_log(nvme_cli_json(CRYPTO_RUNNING))
    assert log == dataclasses.replace(CRYPTO_RUNNING, global_data_erased=False)
    # Some nvme-cli 2.x versions key the status text by itself (obj_add_str(sstat,
    # status_str, str)); and a bare SSTAT register is accepted too.
    body = json.loads(nvme_cli_json(COMPLETED))["nvme7"]
    body["sstat"] = {"global_erased": 1, "no_cmplted_passes": 0,
                     "Most Recent Sanitize Command Completed Successfully.": "(1) text"}
    assert parse_sanitize_log(json.dumps({"nvme7": body})).completed
    body["sstat"] = 0x103
    assert parse_sanitize_log(json.dumps(body)).failed


def test_id_ctrl_of_a_real_drive_offers_crypto_and_block_sanitize() -> None:
    ctrl = parse_id_ctrl(read_recorded(REAL / "nvme-id-ctrl-solidigm-sbfpf2bu153t.txt"))
    assert ctrl.model == "SOLIDIGM SBFPF2BU153T" and ctrl.namespaces == 128
    assert ctrl.sanitize_crypto and ctrl.sanitize_block and not ctrl.sanitize_overwrite
    assert ctrl.format_crypto_erase and not ctrl.format_all_namespaces


def test_id_ns_reports_what_deallocated_blocks_read_as() -> None:
    ns = parse_id_ns(read_recorded(LAB / "nvme-id-ns-nvme.txt"))  # QEMU: DLFEAT 1
    assert ns.dlfeat == 1 and read_after_erase(ns.dlfeat) == b"\0"


def test_refusal_is_read_from_nvme_cli_status_lines() -> None:
    assert "Invalid Command Opcode" in refusal(recorded(LAB / "nvme-sanitize-block-nvme.txt"))
    assert "Invalid Field" in refusal(recorded(LAB / "nvme-sanitize-log-nvme.txt"))
    busy = RunResult(("nvme",), 1, "", "NVMe status: Sanitize In Progress: The requested "
                     "function is prohibited while a sanitize operation is in progress"
                     "(0x411d)", 0.0)
    assert refusal(busy) is None


# --- the stale-log rule ---------------------------------------------------

def test_a_completed_log_proves_a_new_sanitize_only_when_it_changed() -> None:
    crypto = 4
    assert proves_new_sanitize(WRITTEN_SINCE, COMPLETED, crypto)        # GDE 0 -> 1
    assert not proves_new_sanitize(COMPLETED, COMPLETED, crypto)        # nothing changed
    assert not proves_new_sanitize(WRITTEN_SINCE, WRITTEN_SINCE, crypto)
    never = dataclasses.replace(COMPLETED, status=0)
    assert proves_new_sanitize(never, COMPLETED, crypto)
    assert proves_new_sanitize(FAILED, COMPLETED, crypto)
    as_block = dataclasses.replace(COMPLETED, cdw10=2)
    assert not proves_new_sanitize(WRITTEN_SINCE, as_block, crypto)   # another action's log
    assert proves_new_sanitize(as_block, dataclasses.replace(COMPLETED, cdw10=4), crypto)
    one_pass = dataclasses.replace(COMPLETED, cdw10=3, passes=1)
    assert proves_new_sanitize(never, one_pass, 3)
    assert not proves_new_sanitize(never, dataclasses.replace(one_pass, passes=0), 3)


# --- controller topology from sysfs ---------------------------------------

def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def _controller(sysfs: Path, name: str, namespaces: list[str], subsys: int) -> None:
    ctrl = sysfs / "devices" / "pci0000:00" / "nvme" / name
    ctrl.mkdir(parents=True)
    (ctrl / "state").write_text("live\n")
    for ns in namespaces:
        (ctrl / ns).mkdir()
        _link(sysfs / "class" / "block" / ns, ctrl / ns)
    _link(sysfs / "class" / "nvme" / name, ctrl)
    _link(sysfs / "class" / "nvme-subsystem" / f"nvme-subsys{subsys}" / name, ctrl)


def test_namespaces_of_a_real_controller_listing_are_found_in_sysfs(tmp_path: Path) -> None:
    # The LISA recording lists which namespaces share a controller (same SN and
    # model); the sysfs tree is built as the kernel lays out namespaces without
    # multipath: /sys/class/block/nvme0n1 -> .../nvme/nvme0/nvme0n1.
    rows = [ln.split() for ln in read_recorded(
        REAL / "nvme-list-msft-nvme-accelerator-4-namespaces.txt").splitlines()
        if ln.startswith("/dev/")]
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(" ".join(row[1:5]), []).append(Path(row[0]).name)
    for index, names in enumerate(groups.values()):
        _controller(tmp_path, f"nvme{index}", names, index)
    settings = Settings(data_dir=tmp_path, sys_root=tmp_path, dev_root=Path("/fake/dev"))
    topo = nvme_topology("/fake/dev/nvme0n2", settings)
    assert topo is not None and topo.controller == "/fake/dev/nvme0"
    assert topo.namespaces == tuple(f"/fake/dev/nvme0n{i}" for i in (1, 2, 3, 4))
    assert topo.others() == ("/fake/dev/nvme0n1", "/fake/dev/nvme0n3", "/fake/dev/nvme0n4")


def test_a_multipath_namespace_is_sent_to_its_own_controller(tmp_path: Path) -> None:
    # nvme-cli issue #455 (Intel DC P4510): with native multipath the block device
    # is named after the subsystem (nvme0n1) while its controller is nvme1; the
    # head disk hangs under .../nvme-subsystem/nvme-subsys0, the path nvme1c1n1
    # (no /dev node) under the controller.
    _controller(tmp_path, "nvme1", ["nvme1c1n1"], 0)
    head = tmp_path / "devices" / "virtual" / "nvme-subsystem" / "nvme-subsys0" / "nvme0n1"
    head.mkdir(parents=True)
    _link(head.parent / "nvme1", tmp_path / "devices" / "pci0000:00" / "nvme" / "nvme1")
    _link(tmp_path / "class" / "block" / "nvme0n1", head)
    settings = Settings(data_dir=tmp_path, sys_root=tmp_path, dev_root=Path("/fake/dev"))
    topo = nvme_topology("/fake/dev/nvme0n1", settings)
    assert topo == NvmeTopology("/fake/dev/nvme0n1", "/fake/dev/nvme1", ("/fake/dev/nvme0n1",))


@pytest.mark.root
def test_a_loop_device_has_no_nvme_controller(loopdev: Callable[..., str],
                                              settings: Settings) -> None:
    assert nvme_topology(loopdev(MiB), settings) is None


# --- the sanitize engine on loop devices ----------------------------------

@pytest.mark.root
def test_sanitize_unsupported_is_refused_before_anything(loopdev: Callable[..., str],
                                                        settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    # QEMU 7.2 (lab recording): the sanitize log page is refused, Invalid Field.
    fake = FakeNvme(logs=[recorded(LAB / "nvme-sanitize-log-nvme.txt")])
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        sanitizer({"action": "crypto"}, fake, settings).execute(
            d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert "does not support sanitize" in str(err.value) and "sanitize" not in fake.verbs()


@pytest.mark.root
def test_sanitize_invalid_opcode_is_refused(loopdev: Callable[..., str],
                                            settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeNvme(logs=[dataclasses.replace(COMPLETED, status=0)],
                    sanitize=recorded(LAB / "nvme-sanitize-block-nvme.txt"), effect=fill(None),
                    device=dev)
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        sanitizer({"action": "block"}, fake, settings).execute(
            d, sanitize_plan({"action": "block"}), sink=RecordingSink())
    assert "Invalid Command Opcode" in str(err.value)
    assert ["nvme", "sanitize", CTRL, "--sanact=2"] in fake.calls


@pytest.mark.root
def test_crypto_sanitize_runs_reports_progress_and_ends_erased(loopdev: Callable[..., str],
                                                               settings: Settings) -> None:
    dev = loopdev(16 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, CRYPTO_RUNNING, CRYPTO_RUNNING, COMPLETED],
                    effect=fill(None), device=dev)
    sink = RecordingSink()
    with open_device(dev, write=True) as d:
        ex = sanitizer({"action": "crypto"}, fake, settings).execute(
            d, sanitize_plan({"action": "crypto"}), sink=sink)
    assert ex.outcome == "erased", ex.reason
    assert ["nvme", "sanitize", CTRL, "--sanact=4"] in fake.calls
    assert [p.pattern for p in ex.passes] == ["nvme sanitize --sanact=4", "zero (after firmware)"]
    assert ex.canary and ex.canary.ok and ex.verification and ex.verification.ok
    assert ("pass", 0, 16 * MiB * 655 // 65536, 16 * MiB) in sink.updates


@pytest.mark.root
def test_block_sanitize_with_known_read_after_erase_needs_no_zero_fill(
        loopdev: Callable[..., str], settings: Settings) -> None:
    dev = loopdev(16 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, BLOCK_RUNNING, COMPLETED], effect=fill(b"\0"),
                    device=dev)
    options = {"action": "block", "reads_as": "00"}
    with open_device(dev, write=True) as d:
        ex = sanitizer(options, fake, settings).execute(d, sanitize_plan(options),
                                                        sink=RecordingSink())
    assert ex.outcome == "erased", ex.reason
    assert len(ex.passes) == 1 and ex.verification.pattern == "read-after-erase 0x00"


@pytest.mark.root
def test_overwrite_sanitize_asks_one_pass_of_a_zero_pattern(loopdev: Callable[..., str],
                                                           settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    done = dataclasses.replace(COMPLETED, cdw10=3, passes=1)  # edit: one overwrite pass
    fake = FakeNvme(logs=[WRITTEN_SINCE, done], effect=fill(b"\0"), device=dev)
    options = {"action": "overwrite", "reads_as": "00"}
    with open_device(dev, write=True) as d:
        ex = sanitizer(options, fake, settings).execute(d, sanitize_plan(options),
                                                        sink=RecordingSink())
    assert ex.outcome == "erased", ex.reason
    assert ["nvme", "sanitize", CTRL, "--sanact=3", "--owpass=1", "--ovrpat=0"] in fake.calls


@pytest.mark.root
def test_failed_sanitize_says_how_to_leave_failure_mode(loopdev: Callable[..., str],
                                                        settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, CRYPTO_RUNNING, FAILED], effect=fill(None),
                    device=dev)
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        sanitizer({"action": "crypto"}, fake, settings).execute(
            d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert not isinstance(err.value, MethodRefused)
    assert "failure mode" in str(err.value) and f"nvme sanitize {CTRL} --sanact=1" in str(err.value)


@pytest.mark.root
def test_a_stale_completed_log_is_not_accepted(loopdev: Callable[..., str],
                                               settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    # The drive accepts the command, then its log keeps showing the previous
    # sanitize (the real completed log, unchanged): nothing proves this one ran.
    fake = FakeNvme(logs=[COMPLETED], effect=fill(b"\0"), device=dev)
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        sanitizer({"action": "crypto"}, fake, settings).execute(
            d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert "cannot prove this sanitize ran" in str(err.value)
    assert fake.verbs().count("sanitize-log") > 2


@pytest.mark.root
def test_a_sanitize_that_never_ends_times_out_with_advice(loopdev: Callable[..., str],
                                                          settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    # The 660p of nvme-cli issue #3027 stayed at SPROG 655 for a week.
    fake = FakeNvme(logs=[WRITTEN_SINCE, BLOCK_RUNNING], device=dev)
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        sanitizer({"action": "block"}, fake, settings).execute(
            d, sanitize_plan({"action": "block"}), sink=RecordingSink())
    assert "did not finish" in str(err.value) and "1% done" in str(err.value)


@pytest.fixture
def busy_namespace(loopdev: Callable[..., str]) -> Iterator[str]:
    """A second "namespace" that another program holds open."""
    other = loopdev(4 * MiB)
    with open(other, "rb") as fh:
        holder = subprocess.Popen(["sleep", "60"], stdin=fh)
    try:
        yield other
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.root
def test_several_namespaces_with_one_in_use_refuse_sanitize(
        loopdev: Callable[..., str], busy_namespace: str, settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, COMPLETED], effect=fill(None), device=dev)
    engine = sanitizer({"action": "crypto"}, fake, settings, namespaces=(busy_namespace,))
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        engine.execute(d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert busy_namespace in str(err.value) and "sleep" in str(err.value)
    assert fake.calls == []


@pytest.mark.root
def test_several_free_namespaces_let_sanitize_run(loopdev: Callable[..., str],
                                                  settings: Settings) -> None:
    dev, other = loopdev(8 * MiB), loopdev(4 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, COMPLETED], effect=fill(None), device=dev)
    engine = sanitizer({"action": "crypto"}, fake, settings, namespaces=(other,))
    with open_device(dev, write=True) as d:
        ex = engine.execute(d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert ex.outcome == "erased", ex.reason


@pytest.mark.root
def test_a_drive_that_lies_about_sanitize_is_caught_by_canaries(
        loopdev: Callable[..., str], settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeNvme(logs=[WRITTEN_SINCE, CRYPTO_RUNNING, COMPLETED])  # erases nothing
    with open_device(dev, write=True) as d:
        ex = sanitizer({"action": "crypto"}, fake, settings).execute(
            d, sanitize_plan({"action": "crypto"}), sink=RecordingSink())
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason


def test_sanitize_options_are_checked() -> None:
    with pytest.raises(ValueError):
        NvmeSanitizeEngine({"action": "purge"})
    with pytest.raises(ValueError):
        NvmeSanitizeEngine({"action": "crypto", "reads_as": "zz"})


# --- the format engine ----------------------------------------------------

def format_plan(ses: int) -> ErasePlan:
    step = MethodStep(f"nvme-format-ses{ses}", engine="nvme-format", options={"ses": ses})
    return ErasePlan(steps=(step,), verify="full", verify_seed="cd" * 16)


def formatter(fake: FakeNvme, settings: Settings, namespaces: tuple[str, ...] = ()
              ) -> NvmeFormatEngine:
    def topology(path: str) -> NvmeTopology:
        return NvmeTopology(path, CTRL, (path, *namespaces))
    return NvmeFormatEngine({"ses": 2}, runner=fake, sleep=lambda s: None, settings=settings,
                            topology=topology)


@pytest.mark.root
def test_format_refused_by_the_controller_is_method_refused(loopdev: Callable[..., str],
                                                            settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    # QEMU's "Invalid Command Opcode" status line (recorded for sanitize) replayed
    # as the answer to format: the engine reads only nvme-cli's status line.
    fake = FakeNvme(fmt=recorded(LAB / "nvme-sanitize-block-nvme.txt"))
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        formatter(fake, settings).execute(d, format_plan(2), sink=RecordingSink())
    assert f"nvme format --ses=2 on {dev} was refused" in str(err.value)


SOLIDIGM = read_recorded(REAL / "nvme-id-ctrl-solidigm-sbfpf2bu153t.txt")


@pytest.mark.root
def test_format_reaching_all_namespaces_is_refused_when_one_is_in_use(
        loopdev: Callable[..., str], busy_namespace: str, settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    # Edit of the real Solidigm id-ctrl: FNA 4 -> 5 (bit 0: a format of any
    # namespace formats them all).
    all_ns = json.dumps({**json.loads(SOLIDIGM), "fna": 5})
    fake = FakeNvme(id_ctrl=all_ns, effect=fill(None), device=dev)
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        formatter(fake, settings, (busy_namespace,)).execute(d, format_plan(2),
                                                             sink=RecordingSink())
    assert busy_namespace in str(err.value) and "format" not in fake.verbs()


@pytest.mark.root
def test_format_of_one_namespace_ignores_busy_siblings_when_fna_allows(
        loopdev: Callable[..., str], busy_namespace: str, settings: Settings) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeNvme(id_ctrl=SOLIDIGM, effect=fill(None), device=dev)  # real FNA 4
    with open_device(dev, write=True) as d:
        ex = formatter(fake, settings, (busy_namespace,)).execute(d, format_plan(2),
                                                                  sink=RecordingSink())
    assert ex.outcome == "erased", ex.reason
    assert fake.verbs() == ["id-ctrl", "format"]
