"""SCSI SANITIZE (sg3-utils) and eMMC erase (mmc-utils) engines: parsers on
recordings, each engine's decisions on real loop devices with a fake tool that
answers from recordings and really erases the loop device when the "drive"
accepts the command."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from conftest import DATA, read_recorded
from conftest import replay as recorded
from fakedrive import RecordingSink, fill

from imager.erase.mmc import MmcEraseEngine
from imager.erase.progress import NullSink
from imager.erase.scsi import ScsiSanitizeEngine, progress_of, scsi_refusal
from imager.errors import DeviceError, MethodRefused
from imager.host.blockdev import open_device
from imager.host.run import RunResult
from imager.inventory.mmc import parse_extcsd
from imager.model import ErasePlan, MethodStep

MiB = 1 << 20
LAB = DATA / "lab"
EXTCSD = DATA / "real" / "mmc" / "mmc-extcsd-read-samsung-emmc51-8gb.txt"
OK = RunResult(("tool",), 0, "", "", 0.0)


def result(stdout: str = "", stderr: str = "", code: int = 0) -> RunResult:
    return RunResult(("tool",), code, stdout, stderr, 0.0)


class FakeTool:
    """Answers argv by its leading words: a RunResult, or a list of them for
    successive calls (the last repeats). `erasing` names the commands whose
    acceptance runs `effect` on `device`."""

    def __init__(self, answers: dict[str, RunResult | list[RunResult]], *,
                 erasing: tuple[str, ...] = (), effect: Callable[[str], None] | None = None,
                 device: str = "") -> None:
        self.answers = {k: list(v) if isinstance(v, list) else [v] for k, v in answers.items()}
        self.erasing, self.effect, self.device = erasing, effect, device
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], *, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> RunResult:
        self.calls.append(list(argv))
        line = " ".join(argv)
        key = max((k for k in self.answers if line.startswith(k)), key=len)
        queue = self.answers[key]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if answer.ok and self.effect and any(line.startswith(e) for e in self.erasing):
            self.effect(self.device)
        return answer


def plan(engine: str, options: dict[str, str]) -> ErasePlan:
    step = MethodStep(f"{engine}-{options['action']}", engine=engine, options=options,
                      sanitization_class="purge")
    return ErasePlan(steps=(step,), verify="full", verify_seed="ef" * 16)


# --- SCSI SANITIZE --------------------------------------------------------

# sg_requests --progress prints this line while the drive is busy (sg_requests.c:
# printf("Progress indication: %d.%02d%% done\n", ...)) and nothing once it is not.
BUSY = [result("Progress indication: 1.00% done\n"), result("Progress indication: 52.34% done\n"),
        result("")]
# sg_requests with one REQUEST SENSE prints decoded sense data on stderr
# ("data-in decoded as sense:"); after a failed sanitize SBC asks for MEDIUM ERROR,
# SANITIZE COMMAND FAILED (ASC 31h ASCQ 03h), sg_lib's text below.
SENSE_FAILED = result(stderr="data-in decoded as sense:\nFixed format, current; Sense key: "
                      "Medium Error\n Additional sense: Sanitize command failed\n")


def scsi(options: dict[str, str], fake: FakeTool) -> ScsiSanitizeEngine:
    return ScsiSanitizeEngine(options, runner=fake, sleep=lambda s: None)


def test_scsi_refusal_and_progress_are_read_from_sg3_utils_output() -> None:
    refused = recorded(LAB / "sg_sanitize-block-scsi.txt")  # QEMU virtio-scsi, exit 9
    assert "Invalid opcode" in scsi_refusal(refused)
    assert scsi_refusal(result(stderr="sg_sanitize failed: Not ready", code=2)) is None
    assert progress_of(BUSY[1].stdout) == pytest.approx(0.5234)
    assert progress_of("") is None


@pytest.mark.root
def test_scsi_sanitize_invalid_opcode_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"sg_sanitize": recorded(LAB / "sg_sanitize-block-scsi.txt"),
                     "sg_requests": result("")})
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        scsi({"action": "block"}, fake).execute(d, plan("scsi-sanitize", {"action": "block"}),
                                                sink=NullSink())
    assert "Illegal request, Invalid opcode" in str(err.value)
    assert [c[0] for c in fake.calls] == ["sg_sanitize"]


@pytest.mark.root
def test_scsi_crypto_sanitize_runs_reports_progress_and_ends_erased(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(16 * MiB)
    fake = FakeTool({"sg_sanitize": OK, "sg_requests --progress": list(BUSY),
                     "sg_requests": result("")},
                    erasing=("sg_sanitize",), effect=fill(None), device=dev)
    sink = RecordingSink()
    with open_device(dev, write=True) as d:
        ex = scsi({"action": "crypto"}, fake).execute(
            d, plan("scsi-sanitize", {"action": "crypto"}), sink=sink)
    assert ex.outcome == "erased", ex.reason
    assert fake.calls[0] == ["sg_sanitize", "--quick", "--early", "--crypto", dev]
    assert [p.pattern for p in ex.passes] == ["sg_sanitize --quick --early --crypto",
                                              "zero (after firmware)"]
    assert ("pass", 0, int(16 * MiB * 0.5234), 16 * MiB) in sink.updates
    assert fake.calls[-1] == ["sg_requests", dev]


@pytest.mark.root
def test_scsi_overwrite_uses_a_zero_pattern_read_back_without_zero_fill(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"sg_sanitize": OK, "sg_requests": result("")},
                    erasing=("sg_sanitize",), effect=fill(b"\0"), device=dev)
    options = {"action": "overwrite", "reads_as": "00"}
    with open_device(dev, write=True) as d:
        ex = scsi(options, fake).execute(d, plan("scsi-sanitize", options), sink=NullSink())
    assert ex.outcome == "erased", ex.reason
    assert len(ex.passes) == 1 and ex.verification.pattern == "read-after-erase 0x00"
    assert fake.calls[0] == ["sg_sanitize", "--quick", "--early", "--overwrite", "--zero", dev]


@pytest.mark.root
def test_scsi_sanitize_failure_says_how_to_leave_failure_mode(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"sg_sanitize": OK, "sg_requests --progress": list(BUSY),
                     "sg_requests": SENSE_FAILED}, erasing=("sg_sanitize",),
                    effect=fill(None), device=dev)
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        scsi({"action": "block"}, fake).execute(d, plan("scsi-sanitize", {"action": "block"}),
                                                sink=NullSink())
    assert not isinstance(err.value, MethodRefused)
    assert f"sg_sanitize --fail {dev}" in str(err.value)


@pytest.mark.root
def test_scsi_start_failure_other_than_a_refusal_is_a_device_error(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"sg_sanitize": result(stderr="sg_sanitize failed: Not ready, cause "
                                           "not reportable", code=2)})
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        scsi({"action": "crypto"}, fake).execute(
            d, plan("scsi-sanitize", {"action": "crypto"}), sink=NullSink())
    assert not isinstance(err.value, MethodRefused) and "Not ready" in str(err.value)


@pytest.mark.root
def test_a_scsi_drive_that_lies_is_caught_by_canaries(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"sg_sanitize": OK, "sg_requests --progress": list(BUSY),
                     "sg_requests": result("")})
    with open_device(dev, write=True) as d:
        ex = scsi({"action": "crypto"}, fake).execute(
            d, plan("scsi-sanitize", {"action": "crypto"}), sink=NullSink())
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason


# --- eMMC -----------------------------------------------------------------

def test_extcsd_of_a_real_emmc() -> None:
    ext = parse_extcsd(read_recorded(EXTCSD))
    assert (ext.revision, ext.version, ext.sec_features) == (8, "5.1", 0x55)
    assert ext.sanitize and ext.secure_erase and ext.trim and ext.secure_trim
    assert ext.erased_byte == 0x00 and ext.block_addressed
    assert ext.sectors == 0x00E90000 and ext.size == 0x00E90000 * 512


def extcsd_for(size: int, *, sec_features: int | None = None) -> RunResult:
    """The real Samsung EXT_CSD with SEC_COUNT edited to a loop device's size
    (and SEC_FEATURE_SUPPORT edited when asked): an edit, not a recording."""
    text = re.sub(r"\[SEC_COUNT: 0x[0-9a-f]+\]", f"[SEC_COUNT: 0x{size // 512:08x}]",
                  read_recorded(EXTCSD))
    if sec_features is not None:
        text = text.replace("[SEC_FEATURE_SUPPORT: 0x55]",
                            f"[SEC_FEATURE_SUPPORT: 0x{sec_features:02x}]")
    return result(text)


def erase_said(kind: str, end: int, *, failed: bool = False) -> RunResult:
    """What mmc-utils' do_erase prints ("Executing %s from 0x%08x to 0x%08x",
    then " %s Succeed!" or " %s Failed!"), for the fake."""
    label = {"legacy": "Legacy Erase", "trim": "Trim", "secure-erase": "Secure Erase",
             "secure-trim1": "Secure Trim Step 1", "secure-trim2": "Secure Trim Step 2"}[kind]
    word = "Failed" if failed else "Succeed"
    return result(f"Executing {label} from 0x00000000 to 0x{end:08x}\n {label} {word}!\n\n",
                  code=1 if failed else 0)


def mmc(options: dict[str, str], fake: FakeTool) -> MmcEraseEngine:
    return MmcEraseEngine(options, runner=fake, sleep=lambda s: None)


@pytest.mark.root
def test_emmc_sanitize_trims_the_user_area_then_sanitizes(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    end = 8 * MiB // 512 - 1
    fake = FakeTool({"mmc extcsd read": extcsd_for(8 * MiB), "mmc erase": erase_said("trim", end),
                     "mmc sanitize": OK}, erasing=("mmc erase",), effect=fill(b"\0"), device=dev)
    options = {"action": "sanitize", "reads_as": "00"}  # ERASED_MEM_CONT 0x00
    with open_device(dev, write=True) as d:
        ex = mmc(options, fake).execute(d, plan("mmc-erase", options), sink=NullSink())
    assert ex.outcome == "erased", ex.reason
    assert fake.calls[1:] == [["mmc", "erase", "trim", "0", str(end), dev],
                              ["mmc", "sanitize", dev]]
    assert ex.passes[0].pattern == f"mmc erase trim 0 {end}; mmc sanitize"


@pytest.mark.root
def test_emmc_secure_trim_runs_both_steps(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    end = 8 * MiB // 512 - 1
    fake = FakeTool({"mmc extcsd read": extcsd_for(8 * MiB),
                     "mmc erase secure-trim1": erase_said("secure-trim1", end),
                     "mmc erase secure-trim2": erase_said("secure-trim2", end)},
                    erasing=("mmc erase secure-trim2",), effect=fill(b"\0"), device=dev)
    options = {"action": "secure-trim", "reads_as": "00"}
    with open_device(dev, write=True) as d:
        ex = mmc(options, fake).execute(d, plan("mmc-erase", options), sink=NullSink())
    assert ex.outcome == "erased", ex.reason
    assert [c[2] for c in fake.calls[1:]] == ["secure-trim1", "secure-trim2"]


@pytest.mark.root
def test_emmc_without_sanitize_support_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    # Edit: SEC_FEATURE_SUPPORT 0x55 -> 0x15, bit 6 SEC_SANITIZE cleared.
    fake = FakeTool({"mmc extcsd read": extcsd_for(8 * MiB, sec_features=0x15)})
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        mmc({"action": "sanitize"}, fake).execute(d, plan("mmc-erase", {"action": "sanitize"}),
                                                  sink=NullSink())
    assert "SEC_SANITIZE" in str(err.value) and len(fake.calls) == 1


@pytest.mark.root
def test_an_sd_card_has_no_extcsd_and_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"mmc extcsd read": recorded(LAB / "mmc-extcsd-read-sd.txt")})
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        mmc({"action": "erase"}, fake).execute(d, plan("mmc-erase", {"action": "erase"}),
                                               sink=NullSink())
    assert "Could not read EXT_CSD" in str(err.value) or "ioctl" in str(err.value)


@pytest.mark.root
def test_emmc_user_area_must_be_the_whole_device(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    fake = FakeTool({"mmc extcsd read": result(read_recorded(EXTCSD))})  # 7.28 GiB user area
    with open_device(dev, write=True) as d, pytest.raises(MethodRefused) as err:
        mmc({"action": "erase"}, fake).execute(d, plan("mmc-erase", {"action": "erase"}),
                                               sink=NullSink())
    assert "SEC_COUNT" in str(err.value) and len(fake.calls) == 1


@pytest.mark.root
def test_emmc_erase_failure_is_a_device_error(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    end = 8 * MiB // 512 - 1
    fake = FakeTool({"mmc extcsd read": extcsd_for(8 * MiB),
                     "mmc erase": erase_said("secure-erase", end, failed=True)})
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        mmc({"action": "secure-erase"}, fake).execute(
            d, plan("mmc-erase", {"action": "secure-erase"}), sink=NullSink())
    assert not isinstance(err.value, MethodRefused) and "secure-erase" in str(err.value)


@pytest.mark.root
def test_an_emmc_that_lies_is_caught_by_canaries(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    end = 8 * MiB // 512 - 1
    fake = FakeTool({"mmc extcsd read": extcsd_for(8 * MiB),
                     "mmc erase": erase_said("legacy", end)})  # erases nothing
    options = {"action": "erase", "reads_as": "00"}
    with open_device(dev, write=True) as d:
        ex = mmc(options, fake).execute(d, plan("mmc-erase", options), sink=NullSink())
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason


def test_engine_options_are_checked() -> None:
    with pytest.raises(ValueError):
        ScsiSanitizeEngine({"action": "fail"})
    with pytest.raises(ValueError):
        MmcEraseEngine({"action": "discard"})
