"""The operator token for the technicians' tools (CLI, API), kept in
`<data dir>/tokens.json` (0600, created at first start).

Agents hold no shared secret: each proves its own key on every request
(imager.station.identity). A tokens file of before also held an enrolment
token; it is no longer read (no identity comes from a shared secret).
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
    operator: str

    @classmethod
    def path(cls, settings: Settings) -> Path:
        return settings.data_dir / "tokens.json"

    @classmethod
    def open(cls, settings: Settings) -> Tokens:
        """The station's tokens, created on first use."""
        path = cls.path(settings)
        if not path.exists():
            tokens = cls(secrets.token_urlsafe(32))
            write_atomic(path, json.dumps({"operator": tokens.operator}).encode())
            return tokens
        if path.stat().st_mode & 0o077:
            raise UsageError(f"{path} is readable by others: chmod 600 {path}")
        try:
            data = json.loads(path.read_text())
            return cls(str(data["operator"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{path} is damaged ({exc}): delete it to make a new operator "
                             "token") from exc

    def is_operator(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.operator.encode())
