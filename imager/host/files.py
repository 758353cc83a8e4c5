"""Files of the data dir: private from creation, and never seen half written.

The data dir holds donors' personal data (the registry, issued documents,
exports, the agent's spool) and secrets (tokens, keys, ATA temporary
passwords in job plans): its directories are made 0700 and its files 0600 as
they are created, whatever the umask (no window in which another user could
open them), and an existing data dir readable by others is tightened. (The
SQLite registry is created 0600 by imager.store.db, by the same rule.)
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from imager.errors import UsageError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
OTHERS = 0o077   # the group's and the others' permission bits


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents as owner-only directories (0700,
    whatever the umask); directories that exist are left as they are."""
    missing: list[Path] = []
    here = path
    while not here.exists():
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:
            continue  # made by another process meanwhile
        os.chmod(directory, PRIVATE_DIR)  # the umask may have removed owner bits
    return path


def private_data_dir(path: Path) -> bool:
    """Make the data dir owner-only: created 0700, or an existing one readable by
    others tightened to 0700 (which puts the files in it out of their reach).
    Returns True when it tightened it; UsageError when it cannot create it, or
    will not tighten it: a shared directory (sticky or writable by all, such as
    /tmp) or another user's is never changed, the data dir must be one of its own."""
    try:
        private_dir(path)
    except OSError as exc:
        raise UsageError(
            f"impossible de créer le dossier de données {path} ({exc.strerror}) : choisissez "
            "un dossier accessible en écriture avec --data-dir / IMAGER_DATA_DIR / cannot "
            f"create the data dir {path} ({exc.strerror}): choose a writable directory with "
            "--data-dir / IMAGER_DATA_DIR") from exc
    st = path.stat()
    if stat.S_IMODE(st.st_mode) & OTHERS == 0:
        return False
    if st.st_mode & (stat.S_ISVTX | stat.S_IWOTH) or st.st_uid != os.geteuid():
        raise UsageError(
            f"le dossier de données {path} est partagé (comme /tmp) ou appartient à un autre "
            "utilisateur : imager ne le modifie pas ; choisissez un dossier à lui avec "
            f"--data-dir / IMAGER_DATA_DIR (il sera créé en 0700) / the data dir {path} is a "
            "shared directory (like /tmp) or another user's: imager does not change it; "
            "choose a directory of its own with --data-dir / IMAGER_DATA_DIR (it is created "
            "0700)")
    try:
        os.chmod(path, PRIVATE_DIR)
    except OSError as exc:
        raise UsageError(
            f"le dossier de données {path} est lisible par d'autres utilisateurs et ne peut "
            f"pas être restreint ({exc.strerror}) : lancez `chmod 700 {path}` en tant que son "
            "propriétaire, ou choisissez un autre dossier avec --data-dir / IMAGER_DATA_DIR / "
            f"the data dir {path} is readable by other users and cannot be restricted "
            f"({exc.strerror}): run `chmod 700 {path}` as its owner, or choose another "
            "directory with --data-dir / IMAGER_DATA_DIR") from exc
    return True


@contextmanager
def atomic_file(target: Path, what: str = "file", *,
                mode: int = PRIVATE_FILE) -> Iterator[BinaryIO]:
    """A file opened for writing beside `target` under a hidden, unique name,
    created with `mode` (default 0600, whatever the umask); fsynced and renamed
    over `target` when the block ends, removed if it fails. Missing directories
    are made 0700. OSError becomes UsageError naming `target`."""
    part: Path | None = None
    try:
        private_dir(target.parent)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".part")
        part = Path(name)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fd, mode)
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, target)
    except OSError as exc:
        if part is not None:
            part.unlink(missing_ok=True)
        raise UsageError(f"impossible d'écrire / cannot write the {what} {target}: "
                         f"{exc.strerror}; choisissez un dossier accessible en écriture, avec "
                         "assez de place / choose a writable folder with enough space") from exc
    except BaseException:
        if part is not None:
            part.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """Write `data` to a temporary file beside `path` (created with `mode`,
    default 0600), fsync it, then rename it over `path`. An error names the
    file and leaves no temporary file behind."""
    with atomic_file(path, mode=mode) as fh:
        fh.write(data)
