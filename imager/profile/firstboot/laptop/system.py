"""The first boot's hands on the laptop: read the facts, apply the plan.

The only module of the shipped first-boot program that touches the system (files
and subprocesses; on the laptop imager.host is not there). `root` is "/" on the
laptop; a test passes a throwaway Debian root instead: commands then run in it
through `chroot`. The steps marked live_only (the running hostname) run only on a
system systemd booted, never in a chroot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .logic import Account, Command, Config, Step, SystemFacts, WriteFile, plan

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class ApplyError(Exception):
    """A step failed; the message names it (never the password)."""


def read_facts(root: Path, config: Config) -> SystemFacts:
    """What the system says: users, groups, who already has a password, hostname,
    asset tags (the deployment's file, then the SMBIOS chassis and board tags, then
    the SMBIOS serial number), and whether the first boot was done."""
    passwd = _rows(root / "etc/passwd")
    shadow = {row[0]: row[1] for row in _rows(root / "etc/shadow") if len(row) > 1}
    owners = tuple(row[0] for row in passwd if len(row) > 2 and row[2].isdigit()
                   and int(row[2]) in range(1000, 60000)
                   and _usable_hash(shadow.get(row[0], "")))
    dmi = Path(config.dmi_dir)
    return SystemFacts(
        users=frozenset(row[0] for row in passwd),
        groups=frozenset(row[0] for row in _rows(root / "etc/group")),
        owners=owners,
        hostname=_read(root / "etc/hostname").strip(),
        hosts=_read(root / "etc/hosts"),
        asset_tags=(_read(_under(root, config.asset_tag_file)).strip() or None,
                    _read(dmi / "chassis_asset_tag").strip() or None,
                    _read(dmi / "board_asset_tag").strip() or None,
                    _read(dmi / "product_serial").strip() or None),
        done=_under(root, config.marker).exists())


def _rows(path: Path) -> list[list[str]]:
    return [line.split(":") for line in _read(path).splitlines() if line.strip()]


def _usable_hash(field: str) -> bool:
    return bool(field) and field[0] not in "!*"


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def create_account(account: Account, root: Path, config: Config) -> list[str]:
    """Apply the plan for `account` on `root`; return what was done (English, no
    password). If a step fails after the account was made, the account is removed
    again (the first boot then asks once more) and ApplyError says which step."""
    facts = read_facts(root, config)
    done: list[str] = []
    steps = plan(account, facts, config)
    try:
        for step in steps:
            done.append(apply_step(step, root))
    except ApplyError:
        if any(s.startswith("ran useradd") for s in done):
            _run(Command(("userdel", "--remove", account.login), may_fail=True), root)
        raise
    return done


def apply_step(step: Step, root: Path) -> str:
    """Apply one step; return what was done."""
    if isinstance(step, WriteFile):
        try:
            write_file(_under(root, step.path), step.text, step.mode)
        except OSError as exc:
            raise ApplyError(f"cannot write {step.path}: {exc.strerror}") from exc
        return f"wrote {step.path}"
    if step.live_only and not running_system(root):
        return f"skipped {step.argv[0]} (not the running system)"
    return _run(step, root)


def running_system(root: Path) -> bool:
    """True when `root` is the system systemd booted (not a test root, not a chroot)."""
    return root == Path("/") and Path("/run/systemd/system").is_dir()


def _run(command: Command, root: Path) -> str:
    argv = list(command.argv) if root == Path("/") else ["chroot", str(root), *command.argv]
    try:
        proc = subprocess.run(argv, input=command.stdin, capture_output=True, text=True,
                              timeout=120, env={"PATH": PATH, "LC_ALL": "C.UTF-8"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        failure = f"{command.argv[0]} could not run: {exc}"
    else:
        if proc.returncode == 0:
            return f"ran {command.argv[0]}"
        err = (proc.stderr or proc.stdout).strip().splitlines()
        failure = f"{command.argv[0]} exited {proc.returncode}: {err[-1] if err else ''}"
    if command.may_fail:
        print(f"premier démarrage : {failure} (ignored)", file=sys.stderr)
        return f"{failure} (ignored)"
    raise ApplyError(failure)


def write_file(path: Path, text: str, mode: int) -> None:
    """Write `path` whole or not at all (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
