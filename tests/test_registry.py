"""The registry on SQLite: migrations, pragmas, UTC datetimes, repositories."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import HEAD, in_threads
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from imager.errors import NotFound, RegistryError, UsageError
from imager.settings import Settings
from imager.store import people
from imager.store.db import Registry, alembic_config, as_utc, utcnow
from imager.store.models import Base, Donation, Donor, Technician

TABLES = {"donors", "donations", "technicians", "machines", "drives", "jobs", "job_events",
          "ledger_entries", "documents"}
NAMES = ("Mairie de Saint-Véran", "Société Alpine d'Électricité")


# --------------------------------------------------------------------------
# Opening and migrating


def test_open_creates_data_dir_and_schema(settings: Settings) -> None:
    assert not settings.data_dir.exists()
    with Registry.open(settings) as reg:
        assert (settings.data_dir / "registry.sqlite3").is_file()
        assert TABLES <= set(inspect(reg.engine).get_table_names())
        assert reg.current_revision() == HEAD


def test_schema_matches_models(registry: Registry) -> None:
    with registry.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_pragmas(registry: Registry) -> None:
    with registry.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_reopen_keeps_data(settings: Settings) -> None:
    with Registry.open(settings) as reg, reg.session() as s:
        people.add_donor(s, "mairie", NAMES[0])
    with Registry.open(settings) as reg:
        with reg.session() as s:
            assert [d.name for d in people.list_donors(s)] == [NAMES[0]]
        assert reg.current_revision() == HEAD


def test_readonly_session_takes_no_write_lock(registry: Registry) -> None:
    with registry.session(readonly=True) as reader:
        assert people.list_donors(reader) == []
        with registry.session() as writer:  # would wait 30 s if the reader held the lock
            people.add_donor(writer, "person", "Jeanne Dupont")
    with registry.session(readonly=True) as reader:
        assert [d.name for d in people.list_donors(reader)] == ["Jeanne Dupont"]


def test_downgrade_then_upgrade(registry: Registry) -> None:
    config = alembic_config()
    with registry.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(registry.engine).get_table_names())
    registry.upgrade()
    assert TABLES <= set(inspect(registry.engine).get_table_names())


def test_open_failure_names_url_and_fix(tmp_path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    settings = Settings(data_dir=blocker / "data")
    with pytest.raises(RegistryError) as err:
        Registry.open(settings)
    message = str(err.value)
    assert str(blocker / "data" / "registry.sqlite3") in message
    assert "--data-dir" in message and "IMAGER_DATA_DIR" in message


def test_newer_registry_is_refused(settings: Settings) -> None:
    with Registry.open(settings) as reg, reg.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(RegistryError, match="plus récente.*newer"):
        Registry.open(settings)


def test_bad_url_is_a_registry_error(tmp_path) -> None:
    with pytest.raises(RegistryError, match="nosuchdb://.*non prise en charge"):
        Registry.open(Settings(data_dir=tmp_path, db_url="nosuchdb://x"))
    with pytest.raises(RegistryError, match="corrigez l'URL"):
        Registry.open(Settings(data_dir=tmp_path, db_url="pas une url"))


def test_garbage_file_is_a_registry_error(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "registry.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(RegistryError, match="registre imager"):
        Registry.open(settings)


# --------------------------------------------------------------------------
# Sessions, text and datetimes


def test_utf8_round_trip(settings: Settings) -> None:
    with Registry.open(settings) as reg, reg.session() as s:
        for name, kind in zip(NAMES, ("mairie", "société"), strict=True):
            people.add_donor(s, kind, name, address="3 rue de l'Église\n05350 Saint-Véran")
    with Registry.open(settings) as reg, reg.session() as s:
        donors = {d.name: d for d in s.scalars(select(Donor))}
    assert set(donors) == set(NAMES)
    assert donors[NAMES[0]].kind == "town_hall"
    assert donors[NAMES[1]].kind == "company"
    assert donors[NAMES[0]].address == "3 rue de l'Église\n05350 Saint-Véran"


def test_session_rolls_back_on_error(registry: Registry) -> None:
    with pytest.raises(RuntimeError), registry.session() as s:
        people.add_donor(s, "person", "Jeanne Dupont")
        raise RuntimeError("boom")
    with registry.session() as s:
        assert people.list_donors(s) == []


def test_foreign_keys_enforced(registry: Registry) -> None:
    with pytest.raises(IntegrityError), registry.session() as s:
        s.add(Donation(reference="D-1", donor_id=999, received_on=date(2024, 1, 1),
                       created_at=utcnow()))


def test_datetimes_read_back_aware_utc(registry: Registry) -> None:
    paris = timezone(timedelta(hours=2))
    with registry.session() as s:
        donor = Donor(kind="person", name="Jeanne", created_at=datetime(2024, 6, 1, 14, 0,
                                                                          tzinfo=paris))
        s.add(donor)
    with registry.session() as s:
        loaded = s.get(Donor, donor.id)
        assert loaded is not None
        assert loaded.created_at == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert not s.dirty
        s.refresh(loaded)
        assert loaded.created_at.tzinfo is not None
        raw = s.execute(select(Donor.created_at)).scalar_one()
    assert as_utc(raw) == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def test_utcnow_and_as_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)
    assert as_utc(None) is None
    assert as_utc(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)


def test_concurrent_read_modify_write(settings: Settings) -> None:
    """Several writers (each its own engine, like separate processes) never lose
    an update nor fail with 'database is locked'."""
    with Registry.open(settings) as reg, reg.session() as s:
        donor_id = people.add_donor(s, "person", "Compteur", phone="0").id

    def worker() -> None:
        with Registry.open(settings) as reg:
            for _ in range(25):
                with reg.session() as s:
                    donor = s.get(Donor, donor_id)
                    assert donor is not None
                    donor.phone = str(int(donor.phone or "0") + 1)

    assert in_threads(worker, 4) == []
    with Registry.open(settings) as reg, reg.session() as s:
        assert s.get(Donor, donor_id).phone == "100"


# --------------------------------------------------------------------------
# Donors


@pytest.mark.parametrize(("alias", "kind"), [
    ("particulier", "person"), ("Mairie", "town_hall"), ("collectivité", "town_hall"),
    ("COLLECTIVITE", "town_hall"), ("entreprise", "company"), ("société", "company"),
    ("Association", "association"), ("town_hall", "town_hall"), ("person", "person"),
])
def test_kind_aliases(alias: str, kind: str) -> None:
    assert people.normalize_kind(alias) == kind


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"kind": "mairie", "name": "  "}, "nom vide"),
    ({"kind": "ministère", "name": "X"}, "type de donateur inconnu"),
    ({"kind": "person", "name": "X", "email": "jeanne.dupont"}, "e-mail invalide"),
    ({"kind": "company", "name": "X", "siret": "123"}, "14 chiffres"),
    ({"kind": "company", "name": "X", "siret": "1,23457E+13"}, "format Texte"),
    ({"kind": "person", "name": "X" * 201}, "trop long"),
])
def test_add_donor_validation(registry: Registry, kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(UsageError, match=needle), registry.session() as s:
        people.add_donor(s, **kwargs)


def test_add_donor_normalises(registry: Registry) -> None:
    with registry.session() as s:
        donor = people.add_donor(s, "Société", "  Société   Alpine d'Électricité ",
                                 email="contact@sae.fr", siret="123 456 789 00012")
    assert donor.kind == "company"
    assert donor.name == NAMES[1]
    assert donor.siret == "12345678900012"


def test_duplicate_donor_refused(registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "mairie", NAMES[0])
    with pytest.raises(UsageError, match="existe déjà.*already exists"), registry.session() as s:
        people.add_donor(s, "collectivité", "MAIRIE DE SAINT-VÉRAN")


def test_find_donor(registry: Registry) -> None:
    with registry.session() as s:
        town = people.add_donor(s, "mairie", NAMES[0])
        company = people.add_donor(s, "société", NAMES[1])
    with registry.session() as s:
        assert people.find_donor(s, town.id).id == town.id
        assert people.find_donor(s, f"#{company.id}").id == company.id
        assert people.find_donor(s, str(company.id)).id == company.id
        assert people.find_donor(s, "SOCIÉTÉ ALPINE D'ÉLECTRICITÉ").id == company.id
        with pytest.raises(NotFound, match="imager donors add"):
            people.find_donor(s, "Mairie de Briançon")
        with pytest.raises(NotFound):
            people.find_donor(s, "#999")


def test_find_donor_ambiguous(registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "association", "Éole")
        people.add_donor(s, "company", "Éole")
    with pytest.raises(UsageError, match="plusieurs.*numéro"), registry.session() as s:
        people.find_donor(s, "éole")


# --------------------------------------------------------------------------
# Donations


def test_donations(registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "mairie", NAMES[0])
        people.add_donation(s, "DON-2024-001", NAMES[0], date(2024, 3, 15),
                            intake_site="Briançon", notes="12 portables")
        people.add_donation(s, "DON-2024-002", "mairie de saint-véran", date(2024, 4, 2))
    with registry.session() as s:
        listed = people.list_donations(s)
        found = people.find_donation(s, "don-2024-001")
    assert [d.reference for d in listed] == ["DON-2024-002", "DON-2024-001"]
    assert listed[0].donor.name == NAMES[0]
    assert found.intake_site == "Briançon" and found.notes == "12 portables"


def test_duplicate_donation_reference(registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "mairie", NAMES[0])
        people.add_donation(s, "DON-1", NAMES[0], date(2024, 3, 15))
    with pytest.raises(UsageError, match="DON-1.*existe déjà"), registry.session() as s:
        people.add_donation(s, "DON-1", NAMES[0], date(2024, 3, 16))


def test_donation_errors(registry: Registry) -> None:
    with registry.session() as s:
        people.add_donor(s, "mairie", NAMES[0])
    with registry.session() as s:
        with pytest.raises(NotFound, match="imager donations add DON-9"):
            people.find_donation(s, "DON-9")
        with pytest.raises(NotFound, match="imager donors"):
            people.add_donation(s, "DON-9", "Inconnu", date(2024, 1, 1))
        with pytest.raises(UsageError, match="futur"):
            people.add_donation(s, "DON-9", NAMES[0], date.today() + timedelta(days=3))
        with pytest.raises(UsageError, match="référence du don vide"):
            people.add_donation(s, " ", NAMES[0], date(2024, 1, 1))


# --------------------------------------------------------------------------
# Technicians


def test_technicians(registry: Registry) -> None:
    with registry.session() as s:
        people.add_technician(s, "Zoé Müller", level="N2", habilitation_date=date(2023, 1, 10))
        people.add_technician(s, "Amine Benali")
    with registry.session() as s:
        assert [t.name for t in people.list_technicians(s)] == ["Amine Benali", "Zoé Müller"]
        zoe = people.find_technician(s, "ZOÉ MÜLLER")
        assert (zoe.habilitation_level, zoe.habilitation_date) == ("N2", date(2023, 1, 10))
        with pytest.raises(NotFound, match="imager technicians add"):
            people.find_technician(s, "Paul")
    with pytest.raises(UsageError, match="existe déjà"), registry.session() as s:
        people.add_technician(s, "zoé müller")
    with registry.session() as s:
        assert len(s.scalars(select(Technician)).all()) == 2
