"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from imager.errors import UsageError


@contextmanager
def atomic_file(target: Path, what: str = "file") -> Iterator[BinaryIO]:
    """A file opened for writing beside `target` under a hidden name; fsynced and
    renamed over `target` when the block ends, removed if it fails. OSError
    becomes UsageError naming `target`."""
    part = target.with_name(f".{target.name}.part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, target)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise UsageError(f"impossible d'écrire / cannot write the {what} {target}: "
                         f"{exc.strerror}; choisissez un dossier accessible en écriture, avec "
                         "assez de place / choose a writable folder with enough space") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it
    over `path`. An error names the file and leaves no temporary file behind."""
    with atomic_file(path) as fh:
        fh.write(data)
