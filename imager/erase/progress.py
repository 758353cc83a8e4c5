"""How engines report progress and safe points to whoever runs them."""

from __future__ import annotations

import os
from typing import Protocol

from imager.errors import ImagerError
from imager.model import Extent, PassResult


class Interrupted(ImagerError):
    """The run was asked to stop (signal, technician); the job can be resumed."""


class Sink(Protocol):
    def update(self, phase: str, index: int, done: int, total: int) -> None:
        """`done` of `total` bytes of pass `index` (phase 'pass' or 'verify')."""

    def checkpoint(self, index: int, offset: int, seconds: float) -> None:
        """Everything of pass `index` below `offset` is written and flushed,
        after `seconds` of writing in this pass (all runs together)."""

    def stop_requested(self) -> bool:
        """True when the run must stop at the next safe point."""

    def io_error(self, index: int, extent: Extent) -> None:
        """Pass `index` could not write or read `extent`."""

    def step_done(self, result: PassResult) -> None:
        """A step (pass) finished; everything it wrote is flushed."""

    def verify_seed(self) -> str:
        """The seed of a sampled verification whose plan holds none, asked for once
        every write is done: whoever checks the report draws it then, so the
        windows read cannot be known while writing."""


class NullSink:
    def update(self, phase: str, index: int, done: int, total: int) -> None:
        pass

    def checkpoint(self, index: int, offset: int, seconds: float) -> None:
        pass

    def stop_requested(self) -> bool:
        return False

    def io_error(self, index: int, extent: Extent) -> None:
        pass

    def step_done(self, result: PassResult) -> None:
        pass

    def verify_seed(self) -> str:
        return os.urandom(16).hex()
