"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
from pathlib import Path

from imager.errors import UsageError


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it
    over `path`. An error names the file and leaves no temporary file behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"impossible d'écrire / cannot write {path}: {exc.strerror}; "
                         "choisissez un dossier accessible en écriture / choose a writable "
                         "directory") from exc
