"""The registry on a real, throwaway PostgreSQL server (same code, another URL).

The server is initialised in a temporary directory, listens only on a Unix
socket there, runs as `postgres` when the tests run as root, and is stopped
and removed at the end. Missing binaries skip, or fail under CI=true.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import HEAD, in_threads, need
from sqlalchemy import inspect, select, text

from imager.errors import RegistryError
from imager.settings import Settings
from imager.store import people
from imager.store.db import Registry
from imager.store.models import Base, Donor

pytestmark = pytest.mark.server

NAMES = ("Mairie de Saint-Véran", "Société Alpine d'Électricité")


def _bindir() -> Path | None:
    """The directory of initdb/pg_ctl: PATH, pg_config, then Debian's layout."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name))
    return Path(versions[-1]).parent if versions else None


@dataclass
class PgServer:
    bindir: Path
    base: Path
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.base / "data"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [*self.as_user, str(self.bindir / argv[0]), *argv[1:]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.base}&port=5432"

    def start(self) -> None:
        done = self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-locale")
        assert done.returncode == 0, done.stderr
        options = f"-k {self.base} -c listen_addresses='' -p 5432 -c fsync=off"
        done = self.run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w",
                        "-t", "60", "-o", options, "start")
        assert done.returncode == 0, done.stderr + self.log()

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def log(self) -> str:
        path = self.base / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.base), port=5432, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
        return self.url(name)


def _as_user() -> list[str]:
    """Run the server as `postgres` when root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    need(shutil.which("runuser") is not None, "needs runuser to start PostgreSQL as root")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        need(False, "needs a 'postgres' system user to run PostgreSQL as root")
    return ["runuser", "-u", "postgres", "--"]


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    bindir = _bindir()
    need(bindir is not None, "needs the PostgreSQL server binaries (initdb, pg_ctl)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        need(False, "needs psycopg: pip install 'imager[postgresql]'")
    as_user = _as_user()
    base = Path(tempfile.mkdtemp(prefix="imager-pg-", dir="/tmp"))
    if as_user:
        shutil.chown(base, "postgres", "postgres")
    server = PgServer(bindir=bindir, base=base, as_user=as_user)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_settings(pg: PgServer, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at a fresh database, named after the test."""
    name = "t_" + request.node.name.lower().replace("[", "_").replace("]", "")[:50]
    return Settings(data_dir=tmp_path / "data", db_url=pg.create_database(name))


def test_migrations_and_compare_metadata(pg_settings: Settings) -> None:
    with Registry.open(pg_settings) as reg:
        assert reg.current_revision() == HEAD
        assert "job_events" in inspect(reg.engine).get_table_names()
        with reg.engine.connect() as conn:
            assert conn.execute(text("SHOW server_encoding")).scalar() == "UTF8"
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    assert not pg_settings.data_dir.exists()  # nothing written locally for PostgreSQL
    with Registry.open(pg_settings) as reg:  # reopening is a no-op
        assert reg.current_revision() == HEAD


def test_utf8_round_trip_and_repositories(pg_settings: Settings) -> None:
    with Registry.open(pg_settings) as reg, reg.session() as s:
        people.add_donor(s, "mairie", NAMES[0], address="Place de la Mairie\n05350 Saint-Véran")
        people.add_donor(s, "société", NAMES[1], siret="123 456 789 00012")
        people.add_donation(s, "DON-2024-001", "MAIRIE DE SAINT-VÉRAN", date(2024, 3, 15))
        people.add_technician(s, "Zoé Müller", level="N2")
    with Registry.open(pg_settings) as reg, reg.session(readonly=True) as s:
        donors = {d.name: d for d in s.scalars(select(Donor))}
        donation = people.find_donation(s, "don-2024-001")
        assert people.find_technician(s, "zoé müller").habilitation_level == "N2"
    assert set(donors) == set(NAMES)
    assert donors[NAMES[0]].address == "Place de la Mairie\n05350 Saint-Véran"
    assert donors[NAMES[1]].siret == "12345678900012"
    assert donation.donor.name == NAMES[0]


def test_datetimes_are_utc(pg_settings: Settings) -> None:
    paris = timezone(timedelta(hours=2))
    with Registry.open(pg_settings) as reg:
        with reg.session() as s:
            donor = Donor(kind="person", name="Jeanne",
                          created_at=datetime(2024, 6, 1, 14, 0, tzinfo=paris))
            s.add(donor)
        with reg.session(readonly=True) as s:
            loaded = s.get(Donor, donor.id)
            raw = s.execute(select(Donor.created_at)).scalar_one()
    assert loaded is not None
    assert loaded.created_at == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert raw.utcoffset() == timedelta(0)  # the session time zone is UTC


def test_concurrent_open_migrates_once(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, db_url=pg.create_database("t_concurrent"))
    assert in_threads(lambda: Registry.open(settings).close(), 4) == []


def test_missing_database_is_a_clear_error(pg: PgServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, db_url=pg.url("does_not_exist"))
    with pytest.raises(RegistryError) as err:
        Registry.open(settings)
    message = str(err.value)
    assert "does_not_exist" in message and "IMAGER_DB_URL" in message
