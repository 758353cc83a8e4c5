"""The station's two secrets: the enrolment token agents register with, and
the operator token for the technicians' tools (CLI, web UI).

Kept in `<data dir>/tokens.json` (0600, created at first start). An agent
inside a donated laptop gets the enrolment token from the boot medium; it
then receives its own token, of which the station keeps only the SHA-256.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from imager.errors import UsageError
from imager.host.files import write_atomic
from imager.settings import Settings


@dataclass(frozen=True)
class Tokens:
    enrol: str
    operator: str

    @classmethod
    def path(cls, settings: Settings) -> Path:
        return settings.data_dir / "tokens.json"

    @classmethod
    def open(cls, settings: Settings) -> Tokens:
        """The station's tokens, created on first use."""
        path = cls.path(settings)
        if not path.exists():
            tokens = cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
            write_atomic(path, json.dumps({"enrol": tokens.enrol,
                                           "operator": tokens.operator}).encode())
            return tokens
        if path.stat().st_mode & 0o077:
            raise UsageError(f"{path} is readable by others: chmod 600 {path}")
        try:
            data = json.loads(path.read_text())
            return cls(str(data["enrol"]), str(data["operator"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is damaged ({exc}): delete it to make new tokens "
                             "(agents must then enrol again)") from exc

    def is_enrol(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.enrol.encode())

    def is_operator(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.operator.encode())
