"""One Settings object, built once and passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def default_data_dir() -> Path:
    """Where the registry, logs and issued documents live.

    Root (the station service): /var/lib/imager. Anyone else: the XDG data dir.
    IMAGER_DATA_DIR overrides both. It holds donors' personal data and secrets:
    every command makes it owner-only (imager.host.files.private_data_dir).
    """
    env = os.environ.get("IMAGER_DATA_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/imager")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "imager"


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a station; one instance per process."""

    data_dir: Path = field(default_factory=default_data_dir)
    db_url: str | None = None
    dev_root: Path = Path("/dev")
    sys_root: Path = Path("/sys")
    proc_root: Path = Path("/proc")
    excluded_devices: tuple[str, ...] = ()
    checkpoint_seconds: float = 2.0
    erase_policy: Path | None = None   # None: profiles/erase-policy.yaml shipped with imager

    @classmethod
    def from_env(cls, *, data_dir: Path | None = None, db_url: str | None = None) -> Settings:
        """Settings from the environment (IMAGER_*); `data_dir` and `db_url`, when
        given (the command line's), win over it."""
        base = cls(
            db_url=os.environ.get("IMAGER_DB_URL") or None,
            checkpoint_seconds=float(os.environ.get("IMAGER_CHECKPOINT_SECONDS") or 2.0),
            excluded_devices=tuple(
                os.environ.get("IMAGER_EXCLUDE", "").replace(",", " ").split()
            ),                        # commas, spaces or newlines between the entries
            erase_policy=Path(os.environ["IMAGER_ERASE_POLICY"])
            if os.environ.get("IMAGER_ERASE_POLICY") else None,
        )
        if data_dir is not None:
            base = replace(base, data_dir=data_dir)
        if db_url is not None:
            base = replace(base, db_url=db_url)
        return base

    @property
    def database_url(self) -> str:
        """The registry URL: IMAGER_DB_URL, else SQLite in the data dir."""
        return self.db_url or f"sqlite:///{self.data_dir / 'registry.sqlite3'}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def documents_dir(self) -> Path:
        return self.data_dir / "documents"
