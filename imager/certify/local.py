"""What this station checks documents against: its own certificate (with the network
CA's after it, when a network CA issued it) and its own ledger.

`imager cert verify` (without --trust and --ledger) and the public verification page
(imager.station.web.verify) consult the same things through these functions. A
long-running server keeps them in a `LocalCheck`, read again when the ledger grows,
the certificate file changes, or after `max_age` seconds (a ledger altered in place,
behind the triggers that forbid it, is noticed by then).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from imager.certify.keys import fingerprint, keys_dir, load_cert
from imager.certify.ledger import Ledger, now_text
from imager.certify.signing import Trust
from imager.certify.verify import LedgerSource, trust_from
from imager.certify.withdrawal import withdrawal_files
from imager.settings import Settings
from imager.store.db import Registry


def station_cert(settings: Settings) -> Path:
    """The station certificate file (then its chain), as `imager keys export` gives it."""
    return keys_dir(settings) / "station.crt"


def station_trust(settings: Settings) -> Trust | None:
    """The station's certificate and its chain; None before the station has keys."""
    cert = station_cert(settings)
    return trust_from([cert]) if cert.exists() else None


def station_ledger(settings: Settings, registry: Registry) -> LedgerSource:
    """This station's ledger as a verification source. It is consulted only for
    documents signed by this station's key or by a signer of its entries
    (`LedgerSource.not_for`); if its chain is damaged, those documents fail."""
    cert = station_cert(settings)
    owner = fingerprint(load_cert(cert)[0]) if cert.exists() else None
    ledger = Ledger(registry)
    damaged = None if ledger.verify().ok else (
        "le registre de cette station est altéré / this station's ledger is damaged: run "
        "`imager ledger verify`")
    entries = [e.to_dict() for e in ledger.entries()]
    return LedgerSource({e["doc_id"]: e for e in entries},
                        "registre de cette station / this station's ledger", owner, damaged,
                        withdrawals=withdrawal_files(entries, settings.documents_dir),
                        as_of=now_text())


@dataclass(frozen=True)
class Local:
    """The station's trust (None: no keys yet) and ledger, as read at one moment."""

    trust: Trust | None
    ledger: LedgerSource


class LocalCheck:
    """`station_trust` and `station_ledger` for a server: kept while the ledger's head
    and the certificate file stay the same, for at most `max_age` seconds."""

    def __init__(self, settings: Settings, registry: Registry, *, max_age: float = 60.0) -> None:
        self.settings, self.registry, self.max_age = settings, registry, max_age
        self._lock = threading.Lock()
        self._key: tuple[object, ...] | None = None
        self._read_at = 0.0
        self._local: Local | None = None

    def _state(self) -> tuple[object, ...]:
        head = Ledger(self.registry).head()
        try:
            stat = station_cert(self.settings).stat()
            cert: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            cert = None
        return (head.seq, head.hash) if head else None, cert

    def current(self) -> Local:
        """The station's trust and ledger now (read again if they changed)."""
        key = self._state()
        with self._lock:
            fresh = time.monotonic() - self._read_at < self.max_age
            if self._local is None or key != self._key or not fresh:
                self._local = Local(station_trust(self.settings),
                                    station_ledger(self.settings, self.registry))
                self._key, self._read_at = key, time.monotonic()
            return self._local
