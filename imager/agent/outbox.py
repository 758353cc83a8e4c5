"""Events waiting for the station, in order, each with an id.

Durable events (drive plugged in, job moves, checkpoints, reports) are files
in a spool directory, written and fsynced before anything is sent: a dropped
connection, a station restart or an agent killed mid-erase loses none of them,
and the spool on a USB stick can be uploaded later (`imager agent sync`).
Progress ticks are kept in memory only (the next one replaces a lost one).
An event leaves the outbox only when the station has answered for it; the
station applies an event id once, so sending one twice is harmless.
A spool that has a `sent/` folder (a USB stick's) keeps the events the station
answered for there instead of deleting them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imager.errors import UsageError
from imager.host.files import private_dir, write_atomic
from imager.protocol.events import make_event, parse_events

log = logging.getLogger(__name__)
SUFFIX = ".event.json"
IDENTITY = "agent.json"      # who wrote the spool: `imager agent sync` sends as that agent
SENT = "sent"                # if the spool has this folder, answered events move there


class Outbox:
    def __init__(self, spool: Path) -> None:
        self.spool = spool
        try:
            private_dir(spool)
        except OSError as exc:
            raise UsageError(f"cannot use {spool} as the agent's spool ({exc.strerror}): "
                             "give a writable directory with --spool") from exc
        self._lock = threading.Condition()
        self.set_aside = 0          # events set aside as .damaged since this outbox opened
        self._memory: dict[str, dict[str, Any]] = {}
        self._sent = spool / SENT if (spool / SENT).is_dir() else None
        self._last = max((int(p.name.split("-", 1)[0]) for p in self._files()), default=0)

    def sign(self, identity: dict[str, Any]) -> None:
        """Write who makes these events (name, kind, host, boot, Secure Boot), once per
        identity."""
        if self.identity() != identity:
            write_atomic(self.spool / IDENTITY, json.dumps(identity).encode())

    def identity(self) -> dict[str, Any] | None:
        """The agent that wrote the spool, if it said so."""
        try:
            data = json.loads((self.spool / IDENTITY).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _files(self) -> list[Path]:
        return sorted(self.spool.glob(f"*{SUFFIX}"))

    def put(self, kind: str, data: dict[str, Any], *, durable: bool = True) -> dict[str, Any]:
        """Queue an event, checked against its kind's model (imager.protocol.events:
        BadEvent is a bug of the agent's); durable ones are on disk when this returns."""
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            event = make_event(kind, data, id=uuid.uuid4().hex, seq=self._last,
                               at=datetime.now(UTC))
            if durable:
                name = f"{event['seq']:020d}-{event['id']}{SUFFIX}"
                write_atomic(self.spool / name, json.dumps(event).encode())
            else:
                self._memory[event["id"]] = event
            self._lock.notify_all()
        return event

    def pending(self, limit: int = 200) -> list[dict[str, Any]]:
        """The oldest events not yet answered for, in order."""
        with self._lock:
            durable = []
            for path in self._files()[:limit]:
                try:
                    event = json.loads(path.read_text())
                    parse_events([event])
                    durable.append(event)
                except (OSError, ValueError) as exc:   # BadEvent too: never sent, or the
                    self._set_aside(path, str(exc))    # station would refuse them all
            events = durable + list(self._memory.values())
        return sorted(events, key=lambda e: e["seq"])[:limit]

    def _set_aside(self, path: Path, why: str) -> None:
        log.error("spooled event %s set aside (%s): kept as .damaged for a person",
                  path.name, why)
        os.replace(path, path.with_suffix(".damaged"))
        self.set_aside += 1

    def refused(self, ids: list[str], why: str) -> None:
        """The station refused these events as malformed (422): set them aside
        (.damaged, for a person), so that the events behind them go on."""
        with self._lock:
            done = set(ids)
            for path in self._files():
                if path.name[21:-len(SUFFIX)] in done:
                    self._set_aside(path, why)
            for event_id in done:
                if self._memory.pop(event_id, None) is not None:
                    self.set_aside += 1
            self._lock.notify_all()

    def ack(self, ids: list[str]) -> None:
        with self._lock:
            done = set(ids)
            for path in self._files():
                if path.name[21:-len(SUFFIX)] in done:
                    self._answered(path)
            for event_id in done:
                self._memory.pop(event_id, None)
            self._lock.notify_all()

    def _answered(self, path: Path) -> None:
        if self._sent is None:
            path.unlink(missing_ok=True)
        else:
            try:
                os.replace(path, self._sent / path.name)
            except FileNotFoundError:
                pass

    def wait(self, timeout: float) -> None:
        """Until an event is queued or acknowledged (or `timeout`)."""
        with self._lock:
            self._lock.wait(timeout)

    def empty(self) -> bool:
        with self._lock:
            return not self._memory and not self._files()
