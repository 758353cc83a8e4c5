"""Hidden areas of ATA drives (HPA, DCO): find them, remove them, prove it.

An erase of the visible sectors leaves whatever a Host Protected Area or a
Device Configuration Overlay hides; the station removes both first and
records the state before and after (it goes on the certificate).

Order: HPA first, then DCO. hdparm(8) says --dco-restore "will fail if DCO
is frozen/locked, or if a -Np maximum size restriction has also been set",
so a permanent HPA must go before the DCO restore (which then resets the
accessible capacity to the factory maximum). Drives accept one permanent
size change per power cycle: whatever is still hidden afterwards is
reported with the fix (replug, start again), never ignored.

The kernel keeps the old size until the SCSI device is rescanned; libata
may keep it until the drive is re-probed. After a change the station asks
for a rescan (writing 1 to /sys/block/NAME/device/rescan through `tee`, so
it goes through the runner like every other host command) and compares the
kernel's size with the drive's: a mismatch is an error telling the
technician to replug the drive, never a silently short erase.
"""

from __future__ import annotations

import os

from imager.errors import DeviceError
from imager.host.run import Runner, RunResult
from imager.inventory.hdparm import parse_dco_real_max, parse_hpa
from imager.model import HiddenAreaChange, HiddenAreas

TIMEOUT = 60.0
YES = "--yes-i-know-what-i-am-doing"


def _run(runner: Runner, argv: list[str], *, input: str | None = None) -> RunResult:
    return runner(argv, timeout=TIMEOUT, check=False, input=input)


def _tool_line(result: RunResult) -> str:
    lines = [ln.strip() for ln in (result.stderr + "\n" + result.stdout).splitlines()
             if ln.strip() and not ln.strip().endswith(":")]
    return lines[-1] if lines else f"exit status {result.returncode}"


def probe_hidden(path: str, *, runner: Runner) -> HiddenAreas:
    """The drive's visible, native and DCO maximum sectors (`hdparm -N`,
    `hdparm --dco-identify`). A DCO that cannot be read counts as none."""
    result = _run(runner, ["hdparm", "-N", path])
    if "max sectors" not in result.stdout:
        raise DeviceError(f"hdparm -N {path} did not report max sectors ({_tool_line(result)}): "
                          "the drive or its adapter does not pass ATA commands; dock it on SATA "
                          "to check for hidden areas")
    hpa = parse_hpa(result.stdout)
    dco = _run(runner, ["hdparm", "--dco-identify", path])
    real = parse_dco_real_max(dco.stdout, native_max=hpa.native_max) if dco.ok else None
    return HiddenAreas(visible_max=hpa.current_max, native_max=hpa.native_max,
                       dco_real_max=real)


def remove_hidden(path: str, before: HiddenAreas, *, runner: Runner) -> HiddenAreaChange:
    """Remove the HPA and restore the DCO that `before` shows, then prove it.

    Runs nothing when nothing is hidden. Raises DeviceError naming what is
    still hidden (or the size the kernel still sees) after the removal."""
    if not before.any_hidden:
        return HiddenAreaChange(before=before, after=before)
    actions: list[str] = []
    if before.hpa_hidden:
        actions.append(_command(runner, ["hdparm", YES, "-N", f"p{before.native_max}", path]))
    if before.dco_hidden:
        actions.append(_command(runner, ["hdparm", YES, "--dco-restore", path]))
    actions.append(_rescan(runner, path))
    after = probe_hidden(path, runner=runner)
    target = max(before.native_max or 0, before.dco_real_max or 0)
    if after.any_hidden or (after.visible_max or 0) < target:
        raise DeviceError(f"{path} still hides {_still_hidden(after, target)} after "
                          f"{'; '.join(actions)}: "
                          "replug the drive to power-cycle it (drives accept one permanent size "
                          "change per power cycle; a frozen DCO unfreezes at power-on) and start "
                          "again")
    _check_kernel_size(runner, path, after)
    return HiddenAreaChange(before=before, after=after, actions=tuple(actions))


def _command(runner: Runner, argv: list[str]) -> str:
    """Run a state-changing command; its outcome is judged by the re-probe."""
    result = _run(runner, argv)
    shown = " ".join(argv)
    return shown if result.ok else f"{shown} (failed: {_tool_line(result)})"


def _rescan(runner: Runner, path: str) -> str:
    node = f"/sys/block/{os.path.basename(os.path.realpath(path))}/device/rescan"
    result = _run(runner, ["tee", node], input="1\n")
    shown = f"echo 1 > {node}"
    return shown if result.ok else f"{shown} (failed: {_tool_line(result)})"


def _still_hidden(after: HiddenAreas, target: int) -> str:
    parts = []
    if after.hpa_hidden:
        parts.append(f"{after.hpa_hidden} sectors in an HPA ({after.visible_max} of "
                     f"{after.native_max} visible)")
    if after.dco_hidden:
        parts.append(f"{after.dco_hidden} sectors behind a DCO (native {after.native_max}, "
                     f"real {after.dco_real_max})")
    shown = after.visible_max or 0
    if not parts and shown < target:   # e.g. a DCO restore that failed, its page now unreadable
        parts.append(f"{target - shown} sectors ({shown} visible of the {target} found before)")
    return " and ".join(parts)


def _check_kernel_size(runner: Runner, path: str, after: HiddenAreas) -> None:
    size = _blockdev(runner, path, "--getsize64")
    sector = _blockdev(runner, path, "--getss")
    want = (after.visible_max or 0) * sector
    if size < want:
        raise DeviceError(
            f"{path} now shows all {after.visible_max} sectors but the kernel still sees "
            f"{size} bytes of {want}: replug the drive so the kernel re-reads its size, then "
            "start the erase again")


def _blockdev(runner: Runner, path: str, flag: str) -> int:
    result = _run(runner, ["blockdev", flag, path])
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise DeviceError(f"blockdev {flag} {path} failed ({_tool_line(result)}): is the drive "
                          "still plugged in?") from None
