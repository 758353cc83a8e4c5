"""Files holding personal data are private from creation: the data dir is 0700 and
every file in it 0600 whatever the umask (the registry and its WAL, issued
documents, the agent's spool, exports, tokens); a data dir readable by others is
tightened, or refused with the command that fixes it."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import imager
from conftest import need

from imager.agent.outbox import Outbox
from imager.errors import UsageError
from imager.host.files import private_data_dir, write_atomic
from imager.settings import Settings
from imager.store import people
from imager.store.db import Registry

NOBODY = 65534
DETACHED = {"identity": "serial::WD-WCC3F1234567", "path": "/dev/sdb"}   # a spooled event


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask (0022), with which a plain open() or mkdir() is world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """The mode of `root` ("/") and of everything in it, by relative path; a
    directory's name ends with "/"."""
    found = {"/": mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root)) + ("/" if path.is_dir() else "")] = mode(path)
    return found


def station_files(data: Path) -> dict[str, int]:
    """A station's data dir after a CLI command, a registry write, an issued
    document and a spooled event; the modes seen while the registry is open."""
    imager(data, "donors", "add", "Mairie de Gap", "--kind", "mairie", "--email",
           "accueil@mairie-gap.example")
    settings = Settings(data_dir=data)
    with Registry.open(settings) as registry:
        with registry.session() as s:
            people.add_donor(s, "particulier", "Zoé Müller", phone="06 12 34 56 78")
        write_atomic(settings.documents_dir / "CERT-2024-0001.json", b'{"donor": "Zoe"}')
        Outbox(data / "spool" / "bench").put("drive_detached", DETACHED)
        return modes(data)


def test_station_data_dir_is_private_from_creation(tmp_path: Path,
                                                   permissive_umask: None) -> None:
    data = tmp_path / "station" / "data"      # its parent does not exist either
    found = station_files(data)
    files = {name: m for name, m in found.items() if not name.endswith("/")}
    assert {"registry.sqlite3", "registry.sqlite3-wal", "registry.sqlite3-shm",
            "documents/CERT-2024-0001.json"} <= set(files)
    assert any(name.startswith("spool/bench/") for name in files)
    assert {name: m for name, m in files.items() if m != 0o600} == {}
    assert (found["/"], found["documents/"]) == (0o700, 0o700)
    assert mode(data.parent) == 0o700


def test_spool_directories_are_private(tmp_path: Path, permissive_umask: None) -> None:
    spool = tmp_path / "data" / "spool" / "bench"
    Outbox(spool).put("drive_detached", DETACHED)
    assert (mode(spool.parent), mode(spool)) == (0o700, 0o700)


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o277)       # would make files 0400 and directories 0500
    try:
        write_atomic(tmp_path / "exports" / "donors.csv", b"nom;courriel\n")
    finally:
        os.umask(old)
    assert modes(tmp_path / "exports") == {"/": 0o700, "donors.csv": 0o600}


def test_a_public_file_is_asked_for(tmp_path: Path, permissive_umask: None) -> None:
    write_atomic(tmp_path / "station.pem", b"-----BEGIN CERTIFICATE-----\n", mode=0o644)
    assert mode(tmp_path / "station.pem") == 0o644


def test_an_existing_registry_readable_by_others_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "registry.sqlite3").touch()
    os.chmod(data / "registry.sqlite3", 0o644)
    Registry.open(Settings(data_dir=data)).close()
    assert mode(data / "registry.sqlite3") == 0o600


def test_a_data_dir_readable_by_others_is_tightened(tmp_path: Path,
                                                    permissive_umask: None) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert mode(data) == 0o755
    first = imager(data, "donors", "list")
    assert mode(data) == 0o700
    assert f"the data dir {data} was readable by other users, it is now owner-only" \
        in first.stderr
    assert "chmod 700" not in imager(data, "donors", "list").stderr


def as_user(uid: int, call: Callable[[], object]) -> str:
    """`call()` in a child process running as `uid`: "ok" or its UsageError."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            call()
            answer = "ok"
        except UsageError as exc:
            answer = str(exc)
        except BaseException as exc:  # noqa: BLE001 - told to the parent
            answer = f"unexpected: {exc!r}"
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


def test_a_data_dir_of_another_user_readable_by_others_is_refused() -> None:
    need(os.geteuid() == 0, "needs root (to act as another user)")
    top = Path(tempfile.mkdtemp(prefix="imager-data-"))
    try:
        os.chmod(top, 0o755)
        data = top / "data"
        data.mkdir()
        os.chmod(data, 0o755)          # root's, readable by everyone
        answer = as_user(NOBODY, lambda: private_data_dir(data))
        assert answer.startswith(f"le dossier de données {data} est partagé")
        assert "or another user's: imager does not change it" in answer
        assert mode(data) == 0o755
    finally:
        shutil.rmtree(top)


def test_a_shared_directory_such_as_tmp_is_never_made_the_data_dir(tmp_path: Path) -> None:
    """`--data-dir /tmp` must not turn /tmp into a directory of one user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    out = imager(shared, "donors", "list", check=False)
    assert out.returncode == 2, out.stderr
    assert f"the data dir {shared} is a shared directory (like /tmp)" in out.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
