"""What every command handler receives: settings and a lazily opened registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imager.settings import Settings

if TYPE_CHECKING:
    from imager.store.db import Registry


class Context:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        """The registry, opened (and migrated to head) on first use."""
        if self._registry is None:
            # Imported here: SQLAlchemy and Alembic load only for commands that use it.
            from imager.store.db import Registry
            self._registry = Registry.open(self.settings)
        return self._registry

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
