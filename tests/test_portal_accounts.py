# ruff: noqa: F811 - `db`, the fixture imported by name, is every test's argument
"""The coordinators' account actions, on the portal's database (SQLite here; the
same code runs on PostgreSQL in tests/test_portal_donors.py, over HTTPS): a new link
closes the older ones, a disabled account loses its sessions and its links, a
coordinator never disables its own account, a new password ends the old sessions."""

from __future__ import annotations

import pytest
from test_portal_messages import db  # noqa: F401 - a portal database (SQLite), used by name

from imager.errors import NotFound, UsageError
from imager.portal import accounts as a
from imager.portal.db import PortalDb

PASSWORD = "correct horse battery"


def _states(db: PortalDb) -> dict[str, str]:
    with db.session(readonly=True) as s:
        return {x.name: x.state for x in a.list_accounts(s)}


def _sign_in(db: PortalDb, login: str, password: str = PASSWORD) -> tuple[str, a.Who] | str:
    """(the cookie's token, who), or why not."""
    with db.session() as s:
        return a.sign_in(s, login, password)


def _live(db: PortalDb, token: str) -> bool:
    with db.session() as s:
        return a.session_for(s, token) is not None


def test_a_new_link_closes_the_older_ones_and_the_account_stays_invited(db: PortalDb) -> None:
    with db.session() as s:
        first = a.invite(s, name="Collège d'Embrun", by="test")
        second = a.reinvite(s, first.account_id, by="test")
        third = a.reinvite(s, first.account_id, by="test")
    with db.session(readonly=True) as s:
        assert a.invitation(s, first.token) is None and a.invitation(s, second.token) is None
        assert a.invitation(s, third.token) is not None
    assert _states(db) == {"Collège d'Embrun": "invited"}


def test_disabling_ends_sessions_and_links_and_never_oneself(db: PortalDb) -> None:
    with db.session() as s:
        coord = a.invite(s, name="Coordination", role="coordinator", by="test")
        donor = a.invite(s, name="Mairie de Gap", by="test")
        a.accept(s, coord.token, login="coord", password=PASSWORD)
        a.accept(s, donor.token, login="mairie", password=PASSWORD)
    mine, theirs = _sign_in(db, "coord"), _sign_in(db, "mairie")
    assert not isinstance(mine, str) and not isinstance(theirs, str)
    (_, me), (token, them) = mine, theirs
    assert _live(db, token)
    with db.session() as s:
        with pytest.raises(UsageError, match="propre compte"):
            a.set_active(s, me.account_id, False, by=me)
        with pytest.raises(NotFound):
            a.set_active(s, 99999, False, by=me)
        a.set_active(s, them.account_id, False, by=me)
    assert not _live(db, token)
    with db.session() as s:
        with pytest.raises(UsageError, match="réactivez"):
            a.reinvite(s, them.account_id, by="coord")
    assert isinstance(_sign_in(db, "mairie"), str)
    assert _states(db)["Mairie de Gap"] == "disabled"
    with db.session() as s:
        a.set_active(s, them.account_id, True, by=me)
    assert not isinstance(_sign_in(db, "mairie"), str)


def test_a_new_password_ends_the_old_sessions(db: PortalDb) -> None:
    with db.session() as s:
        made = a.invite(s, name="Association Les Écrans", by="test")
        a.accept(s, made.token, login="ecrans", password=PASSWORD)
    before = _sign_in(db, "ecrans")
    assert not isinstance(before, str) and _live(db, before[0])
    with db.session() as s:
        renewed = a.reinvite(s, made.account_id, by="coord")
        assert renewed.new_password and not made.new_password
        a.accept(s, renewed.token, login="ecrans", password="un autre mot de passe")
    assert not _live(db, before[0])
    assert isinstance(_sign_in(db, "ecrans"), str)
    assert not isinstance(_sign_in(db, "ecrans", "un autre mot de passe"), str)
    assert _states(db) == {"Association Les Écrans": "set up"}
