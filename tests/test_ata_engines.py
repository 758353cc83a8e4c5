"""ATA SANITIZE and SECURITY ERASE engines: hdparm parsers on outputs published
for real drives, and every decision path of the engines on a real loop device
driven by a fake hdparm that answers with those recordings.

Recordings are in tests/data/real/ata (each file says where it comes from).
Where no publication shows a state, the test derives it from a real
recording by a text edit commented at the place it is made; the fake drives
below render their state into a real recording the same way."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA, read_recorded
from fakedrive import RecordingSink, overwrite_all

from imager.erase import ata
from imager.erase.ata import AtaSanitizeEngine, AtaSecurityEraseEngine
from imager.erase.engines import ENGINES
from imager.erase.progress import NullSink
from imager.errors import DeviceError, ImagerError, MethodRefused
from imager.host.blockdev import open_device
from imager.host.run import RunResult
from imager.inventory import hdparm
from imager.model import ErasePlan, MethodStep

MiB = 1 << 20
REAL = DATA / "real" / "ata"
LAB = DATA / "lab"


def real(name: str) -> str:
    return read_recorded(REAL / name)


def recorded_result(path: Path, argv: Sequence[str]) -> RunResult:
    """A lab recording replayed: stdout, plus the exit status and stderr of its header."""
    text = path.read_text(encoding="utf-8")
    code = re.search(r"^# Exit status: (\d+)", text, re.M)
    err = "".join(ln + "\n" for ln in re.findall(r"^# stderr: (.*)$", text, re.M))
    return RunResult(tuple(argv), int(code.group(1)) if code else 0, read_recorded(path), err, 0.0)


def with_flag(identify: str, word: str, on: bool) -> str:
    """Derive another security state from a real `hdparm -I` recording: rewrite
    the flag line hdparm prints as "\\t\\t<word>" (set) or "\\tnot\\t<word>"."""
    line = re.compile(rf"^\t(?:not)?\t{word}(?=:|$)", re.M)
    assert line.search(identify), f"no {word!r} line to rewrite"
    return line.sub(("\t\t" if on else "\tnot\t") + word, identify, count=1)


APACER = real("hdparm-I-apacer-as340-enhanced.txt")            # not frozen, enhanced 20/60 min
TOSHIBA_HDD = real("hdparm-I-toshiba-hdwd110-no-enhanced.txt")  # not frozen, no enhanced
TOSHIBA_FROZEN = real("hdparm-I-toshiba-mk2023gas-frozen.txt")  # frozen, no enhanced
CRUCIAL_LOCKED = real("hdparm-I-crucial-m4-locked.txt")         # enabled, locked, expired
MICRON = real("hdparm-I-micron-5300-sanitize-frozen.txt")       # sanitize block/crypto/overwrite
WD80 = real("hdparm-I-wd80emaz-sanitize-overwrite-frozen.txt")  # sanitize overwrite only

STATUS_IN_PROGRESS = real("hdparm-sanitize-status-shinedisk-m667-in-progress.txt")  # 25 %
STATUS_IDLE = real("hdparm-sanitize-status-mx500-idle.txt")  # SD0, no completed flag
# Derived: the same idle status once the drive has set its "completed without
# error" flag; hdparm 9.65 then adds this line (hdparm.c, sanitize_normal_output).
STATUS_COMPLETED = STATUS_IDLE + "    Last Sanitize Operation Completed Without Error\n"
# Derived: SD1 instead of SD0, as hdparm prints it for a sanitize-frozen drive.
STATUS_FROZEN = STATUS_IDLE.replace("SD0 Sanitize Idle", "SD1 Sanitize Frozen")
# No publication shows a failed sanitize: these are the stdout and stderr lines
# hdparm 9.65 prints when SANITIZE STATUS EXT is aborted with reason 01h
# (hdparm.c: do_sanitize_cmd, perror, sanitize_error_output).
STATUS_FAILED_OUT = "\n/dev/sda:\nIssuing SANITIZE_STATUS command\n"
STATUS_FAILED_ERR = ("SANITIZE failed: Input/output error\n"
                     "SANITIZE device error reason: Last Sanitize Command completed "
                     "unsuccessfully\nDrive in SD3 Sanitize Operation Failed state\n")
START_MX500 = real("hdparm-sanitize-block-erase-mx500.txt")
# Derived from the MX500 start: a drive that does start prints the same lines,
# without the SG_IO sense-data complaint.
START_OK = "".join(ln for ln in START_MX500.splitlines(keepends=True)
                   if not ln.startswith("SG_IO"))


def in_progress(percent: int) -> str:
    """Derived from the in-progress recording: another progress value, printed
    as hdparm does (0xFFFF is 100 %)."""
    value = percent * 0xFFFF // 100
    return STATUS_IN_PROGRESS.replace("0x41c2 (25%)", f"0x{value:x} ({percent}%)")


def result(argv: Sequence[str], code: int = 0, out: str = "", err: str = "") -> RunResult:
    return RunResult(tuple(argv), code, out, err, 0.0)


@dataclass
class FakeDrive:
    """Answers the hdparm commands of one drive, on a real loop device."""

    dev: str
    identify: str
    erases: bool = True
    pattern: bytes | None = b"\0"
    calls: list[tuple[str, ...]] = field(default_factory=list)
    timeouts: dict[str, float] = field(default_factory=dict)

    def __call__(self, argv: Sequence[str], *, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> RunResult:
        self.calls.append(tuple(argv))
        self.timeouts[" ".join(argv[:-1])] = timeout
        if tuple(argv) == ("hdparm", "-I", self.dev):
            return result(argv, out=self.render())
        return self.answer(list(argv))

    def render(self) -> str:
        return self.identify

    def answer(self, argv: list[str]) -> RunResult:
        raise AssertionError(f"unexpected command {argv}")

    def erase_medium(self) -> None:
        if self.erases:
            overwrite_all(self.dev, self.pattern)

    def ran(self, flag: str) -> bool:
        return any(flag in call for call in self.calls)


@dataclass
class FakeSanitizeDrive(FakeDrive):
    """SANITIZE: a status before the start, then `after` (its last one repeats)."""

    before: RunResult | str = STATUS_IDLE
    after: list[RunResult | str] = field(default_factory=lambda: [STATUS_COMPLETED])
    start: RunResult | None = None
    started: bool = False

    def answer(self, argv: list[str]) -> RunResult:
        if argv[1:] == ["--sanitize-status", self.dev]:
            answer = self.after.pop(0) if self.started and len(self.after) > 1 else (
                self.after[0] if self.started else self.before)
            return answer if isinstance(answer, RunResult) else result(argv, out=answer)
        assert argv[1] == ata.YES and argv[-1] == self.dev, argv
        self.started = True
        self.erase_medium()
        return self.start or result(argv, out=START_OK)


@dataclass
class FakeSecurityDrive(FakeDrive):
    """ATA Security: renders frozen/enabled into the recording's flag lines."""

    frozen: bool = False
    enabled: bool = False
    thaw_on_suspend: bool = False
    drops_set_pass: bool = False       # a USB bridge that swallows the command
    disables_after_erase: bool = True
    erase_fails: bool = False
    disable_fails: bool = False
    password: str | None = None

    def render(self) -> str:
        text = with_flag(self.identify, "frozen", self.frozen)
        return with_flag(text, "enabled", self.enabled)

    def answer(self, argv: list[str]) -> RunResult:
        if argv[0] == "rtcwake":
            self.frozen = self.frozen and not self.thaw_on_suspend
            return result(argv)
        assert argv[1:3] == ["--user-master", "u"] and argv[-1] == self.dev, argv
        flag, password = argv[3], argv[4]
        return getattr(self, flag.strip("-").replace("-", "_"))(argv, password)

    def security_set_pass(self, argv: list[str], password: str) -> RunResult:
        if self.frozen:
            return result(argv, 5, err="SECURITY_SET_PASS: Input/output error\n")
        if not self.drops_set_pass:
            self.enabled, self.password = True, password
        return result(argv)

    def security_erase(self, argv: list[str], password: str) -> RunResult:
        if self.erase_fails or password != self.password:
            return result(argv, 5, err="SECURITY_ERASE: Input/output error\n")
        self.erase_medium()
        if self.disables_after_erase:
            self.enabled, self.password = False, None
        return result(argv)

    security_erase_enhanced = security_erase

    def security_unlock(self, argv: list[str], password: str) -> RunResult:
        if password != self.password:
            return result(argv, 5, err="SECURITY_UNLOCK: Input/output error\n")
        return result(argv)

    def security_disable(self, argv: list[str], password: str) -> RunResult:
        if self.disable_fails or password != self.password:
            return result(argv, 5, err="SECURITY_UNLOCK: Input/output error\n")
        self.enabled, self.password = False, None
        return result(argv)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def plan_for(engine: str, options: dict[str, object]) -> ErasePlan:
    return ErasePlan(steps=(MethodStep(f"{engine}-test", engine=engine, options=options,
                                       sanitization_class="purge"),),
                     verify="full", verify_seed="ab" * 16)


def run_engine(engine_cls: type[AtaSanitizeEngine] | type[AtaSecurityEraseEngine],
               drive: FakeDrive, options: dict[str, object], sleeps: Sleeps | None = None,
               sink: NullSink | None = None):  # type: ignore[no-untyped-def]
    engine = engine_cls(options, runner=drive, sleep=sleeps if sleeps is not None else Sleeps())
    with open_device(drive.dev, write=True) as d:
        return engine.execute(d, plan_for(engine_cls.name, options), sink=sink or NullSink())


# --- parsers on the recordings ----------------------------------------------------------

def test_identify_security_states_of_real_drives() -> None:
    def sec(text: str) -> hdparm.AtaSecurity:
        parsed = hdparm.parse_identify(text).security
        assert parsed is not None and parsed.supported
        return parsed

    assert sec(TOSHIBA_FROZEN).frozen and not sec(TOSHIBA_FROZEN).enhanced_erase
    assert sec(TOSHIBA_FROZEN).erase_minutes == 24
    apacer = sec(APACER)
    assert not (apacer.frozen or apacer.enabled or apacer.locked) and apacer.enhanced_erase
    assert (apacer.erase_minutes, apacer.enhanced_erase_minutes) == (20, 60)
    assert not sec(TOSHIBA_HDD).enhanced_erase and sec(TOSHIBA_HDD).erase_minutes == 160
    crucial = sec(CRUCIAL_LOCKED)
    assert crucial.enabled and crucial.locked and crucial.count_expired and not crucial.frozen
    assert sec(real("hdparm-I-wd5000bmvv-enhanced.txt")).enhanced_erase_minutes == 138


def test_identify_sanitize_modes_of_real_drives() -> None:
    micron = hdparm.parse_identify(MICRON)
    assert micron.sanitize == {"block", "crypto", "overwrite"}
    assert micron.model == "Micron_5300_MTFDDAK1T9TDS" and micron.sectors == 3750748848
    assert hdparm.parse_identify(WD80).sanitize == {"overwrite"}
    assert hdparm.parse_identify(WD80).security.erase_minutes == 832  # type: ignore[union-attr]
    assert hdparm.parse_identify(APACER).sanitize == frozenset()


def test_sanitize_status_recordings() -> None:
    running = hdparm.parse_sanitize_status(STATUS_IN_PROGRESS)
    assert (running.state, running.percent, running.completed) == ("in progress", 25, False)
    idle = hdparm.parse_sanitize_status(STATUS_IDLE)    # the MX500 that never started
    assert (idle.state, idle.percent, idle.completed) == ("idle", None, False)
    qemu = recorded_result(LAB / "hdparm-sanitize-status-sata.txt", ["hdparm"])
    unsupported = hdparm.parse_sanitize_status(qemu.stdout + qemu.stderr)
    assert unsupported.state == "not supported" and qemu.returncode == 22


def test_sanitize_status_completed_failed_and_frozen_forms() -> None:
    done = hdparm.parse_sanitize_status(STATUS_COMPLETED)
    assert done.state == "completed" and done.completed
    failed = hdparm.parse_sanitize_status(STATUS_FAILED_OUT + STATUS_FAILED_ERR)
    assert failed.state == "failed"
    assert failed.reason == "Last Sanitize Command completed unsuccessfully"
    assert hdparm.parse_sanitize_status(STATUS_FROZEN).state == "frozen"
    assert hdparm.parse_sanitize_status(in_progress(60)).percent == 60
    with pytest.raises(DeviceError, match="State"):
        hdparm.parse_sanitize_status("SG_IO: bad/missing sense data")


def test_sanitize_error_reason_of_a_refused_start() -> None:
    assert hdparm.sanitize_error_reason(START_MX500) is None  # hdparm saw no error
    err = "SANITIZE failed: Input/output error\nSANITIZE device error reason: Unsupported command\n"
    assert hdparm.sanitize_error_reason(err) == "Unsupported command"


# --- options, registry, timeouts ------------------------------------------------------

def test_engines_are_registered() -> None:
    assert ENGINES["ata-sanitize"] is AtaSanitizeEngine
    assert ENGINES["ata-security-erase"] is AtaSecurityEraseEngine


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        AtaSanitizeEngine({"mode": "zap"})
    with pytest.raises(ValueError, match="reads_as"):
        AtaSanitizeEngine({"mode": "overwrite", "reads_as": "ff"})
    with pytest.raises(ValueError, match="unfreeze"):
        AtaSecurityEraseEngine({"unfreeze": "always"})
    for bad in ("NULL", "", "has space", "x" * 33, "é"):
        with pytest.raises(ValueError, match="password"):
            AtaSecurityEraseEngine({"password": bad})
    assert AtaSecurityEraseEngine({"password": "fixed-1"}).password == "fixed-1"
    assert AtaSecurityEraseEngine({}).password != AtaSecurityEraseEngine({}).password


def test_timeouts_come_from_the_drive_and_exceed_hdparms_own() -> None:
    size = 8_001_563_222_016
    # hdparm waits max(2 x 832 + 60 min, size / 30 MiB/s + 30 min) itself.
    hdparm_own = max((2 * 832 + 60) * 60, size / (30 << 20) + 1800)
    assert ata.security_erase_timeout(832, size) > hdparm_own
    assert ata.security_erase_timeout(None, 1 << 30) > 1800
    wd80 = hdparm.parse_identify(WD80)
    assert ata.sanitize_timeout(wd80, size) > ata.security_erase_timeout(832, size)


# --- SANITIZE on a loop device ----------------------------------------------------------

@pytest.mark.root
def test_sanitize_block_erase_seen_in_progress_is_erased(loopdev: Callable[..., str]) -> None:
    dev = loopdev(16 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, pattern=b"\xff",
                              after=[STATUS_IN_PROGRESS, in_progress(60), STATUS_COMPLETED])
    sleeps, sink = Sleeps(), RecordingSink()
    ex = run_engine(AtaSanitizeEngine, drive, {"mode": "block"}, sleeps, sink)
    assert ex.outcome == "erased", ex.reason
    assert ("hdparm", ata.YES, "--sanitize-block-erase", dev) in drive.calls
    assert ex.passes[0].pattern == "hdparm --sanitize-block-erase"
    assert ex.passes[1].pattern.startswith("zero")  # block erase content is vendor-defined
    assert ex.canary and ex.canary.ok
    assert ("pass", 0, 16 * MiB * 25 // 100, 16 * MiB) in sink.updates
    assert ("pass", 0, 16 * MiB * 60 // 100, 16 * MiB) in sink.updates
    assert sleeps == [ata.POLL_SECONDS] * 2


@pytest.mark.root
def test_sanitize_overwrite_writes_one_zero_pass_and_needs_no_fill(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, WD80, after=[STATUS_IN_PROGRESS, STATUS_COMPLETED])
    ex = run_engine(AtaSanitizeEngine, drive, {"mode": "overwrite", "reads_as": "00"})
    assert ex.outcome == "erased", ex.reason
    assert ("hdparm", ata.YES, "--sanitize-overwrite-passes", "1", "--sanitize-overwrite",
            "hex:00000000", dev) in drive.calls
    assert len(ex.passes) == 1 and ex.verification and ex.verification.coverage == 1.0


@pytest.mark.root
def test_fast_crypto_scramble_whose_flag_rose_is_accepted(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, pattern=None, before=STATUS_IDLE,
                              after=[STATUS_COMPLETED])
    ex = run_engine(AtaSanitizeEngine, drive, {"mode": "crypto"})
    assert ex.outcome == "erased", ex.reason
    assert "completion flag raised by it" in ex.passes[0].pattern


@pytest.mark.root
def test_crypto_scramble_with_a_stale_flag_rests_on_the_canaries(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    honest = FakeSanitizeDrive(dev, MICRON, pattern=None, before=STATUS_COMPLETED,
                               after=[STATUS_COMPLETED])
    ex = run_engine(AtaSanitizeEngine, honest, {"mode": "crypto"})
    assert ex.outcome == "erased", ex.reason
    assert "only the canary check proves it" in ex.passes[0].pattern
    lying = FakeSanitizeDrive(dev, MICRON, erases=False, before=STATUS_COMPLETED,
                              after=[STATUS_COMPLETED])
    ex = run_engine(AtaSanitizeEngine, lying, {"mode": "crypto"})
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason


@pytest.mark.root
def test_block_erase_never_seen_running_with_a_stale_flag_is_not_accepted(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, before=STATUS_COMPLETED, after=[STATUS_COMPLETED])
    with pytest.raises(DeviceError, match=f"{dev} reports a completed sanitize but never"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"})


@pytest.mark.root
def test_drive_that_says_started_but_stays_idle_is_refused(loopdev: Callable[..., str]) -> None:
    # The Crucial MX500 recording: hdparm prints "Operation started in
    # background", the status then stays SD0 idle with no completed sanitize.
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, erases=False, before=STATUS_IDLE,
                              after=[STATUS_IDLE],
                              start=result(["hdparm"], out=START_MX500))
    sleeps = Sleeps()
    with pytest.raises(MethodRefused, match="never started it"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"}, sleeps)
    assert sleeps == [ata.POLL_SECONDS] * (ata.STARTUP_POLLS - 1)


@pytest.mark.root
def test_unsupported_sanitize_mode_is_refused_before_any_command(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    for identify, mode in ((WD80, "block"), (APACER, "crypto")):
        drive = FakeSanitizeDrive(dev, identify)
        with pytest.raises(MethodRefused, match=f"does not support SANITIZE {mode}"):
            run_engine(AtaSanitizeEngine, drive, {"mode": mode})
        assert drive.calls == [("hdparm", "-I", dev)]


@pytest.mark.root
def test_sanitize_status_not_supported_or_frozen_is_refused(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    qemu = recorded_result(LAB / "hdparm-sanitize-status-sata.txt", ["hdparm"])
    for before, why in ((qemu, "does not support SANITIZE"), (STATUS_FROZEN, "frozen")):
        drive = FakeSanitizeDrive(dev, MICRON, before=before)
        with pytest.raises(MethodRefused, match=why):
            run_engine(AtaSanitizeEngine, drive, {"mode": "block"})
        assert not drive.started


@pytest.mark.root
def test_sanitize_aborted_at_start_is_refused_with_the_reason(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    # Derived: what hdparm 9.65 prints when the drive aborts the command with
    # reason 02h (hdparm.c: perror, sanitize_error_output).
    aborted = result(["hdparm"], 5, out="\n/dev/sda:\nIssuing SANITIZE_BLOCK_ERASE command\n",
                     err="SANITIZE failed: Input/output error\n"
                         "SANITIZE device error reason: Unsupported command\n")
    drive = FakeSanitizeDrive(dev, MICRON, erases=False, start=aborted, after=[STATUS_IDLE])
    with pytest.raises(MethodRefused, match=r"refused SANITIZE block before starting "
                                            r"\(Unsupported command\)"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"})


@pytest.mark.root
def test_sanitize_that_fails_is_a_device_error(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    failed = result(["hdparm"], 5, out=STATUS_FAILED_OUT, err=STATUS_FAILED_ERR)
    drive = FakeSanitizeDrive(dev, MICRON, after=[STATUS_IN_PROGRESS, failed])
    with pytest.raises(DeviceError, match=f"SANITIZE block failed on {dev}.*destroy the drive"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"})


@pytest.mark.root
def test_sanitize_already_running_is_not_restarted(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, before=STATUS_IN_PROGRESS)
    with pytest.raises(DeviceError, match=r"started earlier is still running .*\(25%\)"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"})
    assert not drive.started
    with open(dev, "rb") as fh:   # checked before any canary: a busy drive refuses writes
        assert fh.read() == bytes(8 * MiB)


@pytest.mark.root
def test_sanitize_that_never_ends_times_out(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, after=[STATUS_IN_PROGRESS])
    sleeps = Sleeps()
    with pytest.raises(DeviceError, match="still running after .* leave the drive powered"):
        run_engine(AtaSanitizeEngine, drive, {"mode": "block"}, sleeps)
    timeout = ata.sanitize_timeout(hdparm.parse_identify(MICRON), 8 * MiB)
    assert sum(sleeps) == pytest.approx(timeout, abs=ata.POLL_SECONDS)


@pytest.mark.root
def test_a_sanitize_that_lies_is_caught_by_its_canaries(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSanitizeDrive(dev, MICRON, erases=False,
                              after=[STATUS_IN_PROGRESS, STATUS_COMPLETED])
    ex = run_engine(AtaSanitizeEngine, drive, {"mode": "block"})
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason
    assert ex.canary and len(ex.canary.survivors) == ex.canary.planted


# --- SECURITY ERASE on a loop device ----------------------------------------------------

@pytest.mark.root
def test_frozen_security_is_refused_without_suspend(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, TOSHIBA_FROZEN, frozen=True)
    with pytest.raises(MethodRefused, match="security frozen .* replug the drive"):
        run_engine(AtaSecurityEraseEngine, drive, {"unfreeze": "never"})
    assert drive.calls == [("hdparm", "-I", dev)]


@pytest.mark.root
def test_suspend_unfreezes_then_enhanced_erase_succeeds(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, MICRON, frozen=True, thaw_on_suspend=True, pattern=None)
    sleeps = Sleeps()
    options = {"enhanced": True, "unfreeze": "suspend", "password": "temp-pw"}
    ex = run_engine(AtaSecurityEraseEngine, drive, options, sleeps)
    assert ex.outcome == "erased", ex.reason
    assert [c[0] if c[0] == "rtcwake" else c[3] for c in drive.calls if c[1] != "-I"] == [
        "rtcwake", "--security-set-pass", "--security-erase-enhanced"]
    assert ("hdparm", "--user-master", "u", "--security-erase-enhanced", "temp-pw", dev) \
        in drive.calls
    assert ex.passes[0].pattern == "hdparm --security-erase-enhanced"
    assert len(ex.passes) == 2      # enhanced: vendor pattern, so the zero fill follows
    assert ata.RESUME_SETTLE_SECONDS in sleeps


@pytest.mark.root
def test_still_frozen_after_suspend_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, TOSHIBA_FROZEN, frozen=True, thaw_on_suspend=False)
    with pytest.raises(MethodRefused, match="still frozen after a suspend/resume cycle"):
        run_engine(AtaSecurityEraseEngine, drive, {"unfreeze": "suspend"})
    assert not drive.ran("--security-set-pass")


@pytest.mark.root
def test_locked_drive_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, CRUCIAL_LOCKED, enabled=True)   # renders it unchanged
    assert drive.render() == CRUCIAL_LOCKED
    with pytest.raises(MethodRefused, match="locked .* unlock it with the known password"):
        run_engine(AtaSecurityEraseEngine, drive, {})
    assert drive.calls == [("hdparm", "-I", dev)]


@pytest.mark.root
def test_enhanced_erase_unsupported_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, TOSHIBA_HDD)
    with pytest.raises(MethodRefused, match="does not support ENHANCED SECURITY ERASE"):
        run_engine(AtaSecurityEraseEngine, drive, {"enhanced": True})


@pytest.mark.root
def test_expired_password_count_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    # Derived: the Apacer recording with its count flagged expired.
    drive = FakeSecurityDrive(dev, with_flag(APACER, "expired", True))
    with pytest.raises(MethodRefused, match="too many wrong ATA passwords"):
        run_engine(AtaSecurityEraseEngine, drive, {})


@pytest.mark.root
def test_normal_security_erase_reads_as_zero_in_one_step(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER)
    ex = run_engine(AtaSecurityEraseEngine, drive, {"reads_as": "00", "password": "pw-1"})
    assert ex.outcome == "erased", ex.reason
    assert len(ex.passes) == 1 and ex.passes[0].pattern == "hdparm --security-erase"
    assert [c for c in drive.calls if c[1] != "-I"] == [
        ("hdparm", "--user-master", "u", "--security-set-pass", "pw-1", dev),
        ("hdparm", "--user-master", "u", "--security-erase", "pw-1", dev)]
    assert drive.timeouts["hdparm --user-master u --security-erase pw-1"] \
        == ata.security_erase_timeout(20, 8 * MiB)


@pytest.mark.root
def test_security_still_enabled_after_erase_fails_with_the_password(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, TOSHIBA_HDD, disables_after_erase=False)
    engine = AtaSecurityEraseEngine({"reads_as": "00"}, runner=drive, sleep=Sleeps())
    with open_device(dev, write=True) as d, pytest.raises(DeviceError) as err:
        engine.execute(d, plan_for(engine.name, {"reads_as": "00"}), sink=NullSink())
    message = str(err.value)
    assert "security is still enabled" in message and engine.password in message
    assert engine.password.startswith("imager-") and "security disable succeeded" in message
    assert drive.calls[-1][3] == "--security-disable" and not drive.enabled


@pytest.mark.root
def test_failed_erase_and_failed_disable_tell_how_to_unlock(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER, erase_fails=True, disable_fails=True)
    with pytest.raises(DeviceError, match=f"SECURITY ERASE UNIT failed .*`hdparm --user-master u "
                                          f"--security-disable pw-2 {dev}`"):
        run_engine(AtaSecurityEraseEngine, drive, {"password": "pw-2"})
    assert drive.enabled and drive.password == "pw-2"   # the drive really keeps it


@pytest.mark.root
def test_bridge_that_drops_set_password_is_refused(loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER, drops_set_pass=True)
    with pytest.raises(MethodRefused, match="security is still disabled .*dock the drive"):
        run_engine(AtaSecurityEraseEngine, drive, {})
    assert not drive.ran("--security-erase")


@pytest.mark.root
def test_a_security_erase_that_lies_is_caught_by_its_canaries(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER, erases=False)
    ex = run_engine(AtaSecurityEraseEngine, drive, {"reads_as": "00"})
    assert ex.outcome == "failed" and "canary markers survived" in ex.reason
    assert not drive.enabled        # the drive still cleared its password


@dataclass
class HangingSecurityDrive(FakeSecurityDrive):
    """A drive busy erasing: hdparm times out on the commands named in `hangs`."""

    hangs: tuple[str, ...] = ()

    def answer(self, argv: list[str]) -> RunResult:
        if any(flag in argv for flag in self.hangs):
            if "--security-erase" in argv:
                self.erase_medium()
            raise ImagerError("hdparm did not answer within 60 s")
        return super().answer(argv)


@pytest.mark.root
def test_timeouts_during_erase_and_disable_still_report_the_password(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = HangingSecurityDrive(dev, APACER, hangs=("--security-erase", "--security-disable"))
    with pytest.raises(DeviceError) as err:
        run_engine(AtaSecurityEraseEngine, drive, {"password": "pw-3"})
    message = str(err.value)
    assert "did not answer" in message and "pw-3" in message
    assert f"hdparm --user-master u --security-disable pw-3 {dev}" in message


@pytest.mark.root
def test_a_run_killed_after_setting_the_password_is_cleared_by_the_next(
        loopdev: Callable[..., str]) -> None:
    """The plan (in the registry) holds the password: the resumed run removes it."""
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER, enabled=True, password="pw-4")
    ex = run_engine(AtaSecurityEraseEngine, drive, {"reads_as": "00", "password": "pw-4"})
    assert ex.outcome == "erased", ex.reason
    assert ("hdparm", "--user-master", "u", "--security-disable", "pw-4", dev) in drive.calls


@pytest.mark.root
def test_a_password_we_do_not_know_is_not_guessed_at_length(
        loopdev: Callable[..., str]) -> None:
    dev = loopdev(8 * MiB)
    drive = FakeSecurityDrive(dev, APACER, enabled=True, password="donor-secret")
    run_engine(AtaSecurityEraseEngine, drive, {"reads_as": "00", "password": "pw-5"})
    tries = [c for c in drive.calls if "pw-5" in c and c[3] in ("--security-unlock",
                                                                 "--security-disable")]
    assert len(tries) <= 2   # the drive counts wrong passwords (5 at most): two tries
