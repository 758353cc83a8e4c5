"""The live system's serial console lines: one per stage, in one fixed shape.

    IMAGER-LIVE stage=network ip=10.0.2.15/24 iface=enp0s2 mac=52:54:00:12:34:56

Tests, and the station's flow tests, wait for these lines; the live init (a shell
script built from these constants, `imager.boot.initscript`) and the live session
(`imager.boot.session`) print them. A value never holds a space: `line()` replaces
spaces with `_`, so that `parse()` can split on them."""

from __future__ import annotations

import re

PREFIX = "IMAGER-LIVE"

START = "start"                       # the init runs (kernel=...)
NETWORK = "network"                   # an address: ip=... iface=... mac=... router=...
NETWORK_FAILED = "network-failed"     # reason=no-interface|no-carrier|no-dhcp ...
AGENT_STARTED = "agent-started"       # the agent process runs (pid=...)
ENROLLED = "enrolled"                 # the station accepted the agent: agent=N
PENDING = "pending"                   # waiting for a technician: agent=N code=XXXX-XXXX
JOB = "job"                           # a job runs: job=N kind=erase phase=... percent=...
FAILED = "failed"                     # reason=station-unreachable|station-refused|...
STICK = "stick"                       # from USB: the stick's data partition mounted:
                                      # part=/dev/sda3 mount=...
OFFLINE = "offline"                   # from USB, no network or station: the offline agent
                                      # runs: reason=no-interface|no-carrier|... pid=...
OFFLINE_DONE = "offline-done"         # every drive erased and verified offline (and the
                                      # kit's system installed): erased=N installed=N
POWEROFF = "poweroff"                 # the stick synced and unmounted: the laptop powers off
DONE = "done"                         # the station says the laptop is done: it restarts
                                      # (from USB: it powers off)

STAGES = (START, NETWORK, NETWORK_FAILED, AGENT_STARTED, ENROLLED, PENDING, JOB, FAILED,
          STICK, OFFLINE, OFFLINE_DONE, POWEROFF, DONE)

# The reasons of `failed` and `network-failed`.
NO_INTERFACE = "no-interface"         # no wired interface (or not the booted MAC)
NO_CARRIER = "no-carrier"             # no cable: no link on any wired interface
NO_DHCP = "no-dhcp"                   # a link, but no address from the router
STATION_UNREACHABLE = "station-unreachable"
STATION_NOT_TRUSTED = "station-not-trusted"   # its certificate is not the pinned CA's
STATION_REFUSED = "station-refused"   # e.g. a boot token already used, a revoked agent
AGENT_EXITED = "agent-exited"         # the agent process ended
NO_STATION = "no-station"             # no imager.station= on the command line
NO_STATION_CA = "no-station-ca"       # https station, but no CA initrd
SESSION_EXITED = "session-exited"     # the live session (Python) itself ended
NO_STICK = "no-stick"                 # from USB: no readable IMAGER-DATA partition
NO_DRIVE = "no-drive"                 # offline: no internal drive was offered to erase
ERASE_FAILED = "erase-failed"         # offline: a drive could not be erased (failed=N)
IMAGE_FAILED = "image-failed"         # offline: erased, but the kit's system not installed

_UNSAFE = re.compile(r"\s+")


def line(stage: str, **fields: object) -> str:
    """`IMAGER-LIVE stage=<stage> key=value...`, None values left out."""
    if stage not in STAGES:
        raise ValueError(f"unknown live stage {stage!r}: add it to imager.boot.stages")
    parts = [PREFIX, f"stage={stage}"]
    parts += [f"{key}={_UNSAFE.sub('_', str(value)) or '-'}" for key, value in fields.items()
              if value is not None]
    return " ".join(parts)


def parse(text: str) -> tuple[str, dict[str, str]] | None:
    """(stage, fields) of an `IMAGER-LIVE` line found in `text`, else None."""
    start = text.find(PREFIX + " ")
    if start < 0:
        return None
    words = text[start:].split()[1:]
    fields = dict(word.split("=", 1) for word in words if "=" in word)
    stage = fields.pop("stage", None)
    return (stage, fields) if stage in STAGES else None
