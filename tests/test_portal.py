"""Two stations and the network's portal, each in its own network namespace: real
PostgreSQL, real HTTPS between them.

Two workshops, each a station with its own data dir and its own key, certified by one
network CA (made here, through `imager keys csr` / `install`). Both issue documents
with the station's own code while the portal is down: Gap erases a loop device and
certifies it, records a destruction and certifies its donation; Briançon records a
destruction and certifies its donation, while `imager serve --portal` runs there and
keeps trying. The portal starts: Gap pushes with `imager portal push` (in batches),
Briançon's background pusher catches up. The portal then holds both ledgers; pushing
again sends nothing; a station outside the network, a forked ledger, a ledger going
backwards and another station's documents are refused; a withdrawal pushed later
reaches the public page; the public page answers for an id and its hash only.

The network (tests/portal_net.py PortalNet, made by the test and removed after it):
a bridge in a namespace of its own; the portal, Gap, Briançon, a third station's
machine and a visitor (who checks documents on the public page) each in a namespace
joined to it by a veth, on 10.67.0.0/24. The portal listens on its namespace's
address only; every station command runs in its station's namespace; the test's own
requests come from the visitor's. PostgreSQL listens on a Unix socket, beside the
network (the portal's listener split is tests/test_portal_routes.py).
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from certmaker import make
from clirun import imager, json_lines
from conftest import LoopFactory, need, need_root
from portal_net import Portal, PortalNet, copy_keys, network_ca, portal_tls, station
from sqlalchemy import func, select
from station_proc import Serve, until
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name
from test_web_verify import REF, TECH, WHY, _destroy

from imager.certify.identity import load_profile
from imager.certify.keys import station_keys
from imager.certify.ledger import Ledger
from imager.certify.render import qr_text
from imager.certify.signing import sign_document
from imager.portal import models as m
from imager.portal.db import PortalDb
from imager.protocol.push import PUSH_PATH, LedgerBatch, Push
from imager.settings import Settings
from imager.station.push import PortalClient, PortalRefused, PortalTarget
from imager.store.db import Registry

pytestmark = [pytest.mark.root, pytest.mark.server]

MiB = 1 << 20
COMPANY = "Société Alpine d'Électricité"
PERSON = "Jeanne Martin-Rousseau"            # a private donor: her name never leaves
JSON = {"Accept": "application/json"}




def _ledger(data: Path) -> list[dict[str, Any]]:
    with Registry.open(Settings(data_dir=data)) as reg:
        return [e.to_dict() for e in Ledger(reg).entries()]


def _issue_gap(data: Path, loops: LoopFactory) -> dict[str, dict[str, Any]]:
    """Gap's documents: an erasure of a loop device, a destruction, the donation's."""
    imager(data, "donors", "add", "--kind", "entreprise", COMPANY)
    imager(data, "donations", "add", "--donor", COMPANY, REF)
    imager(data, "technicians", "add", "--level", "Niveau 2", TECH)
    erased = json_lines(imager(data, "erase", loops(16 * MiB), "--donation", REF,
                               "--technician", TECH, "--json", check=False).stdout)[-1]
    assert erased["outcome"] == "erased", erased
    eff = json_lines(imager(data, "cert", "issue", str(erased["job_id"]), "--json").stdout)[0]
    des = _destroy(data, "WD-GAP-0001")
    don = json_lines(imager(data, "cert", "donation", REF, "--json").stdout)[0]
    return {"eff": eff, "des": des, "don": don}


def _issue_briancon(data: Path) -> dict[str, dict[str, Any]]:
    """Briançon's documents, for a private donor: a destruction, the donation's."""
    imager(data, "donors", "add", "--kind", "particulier", PERSON)
    imager(data, "donations", "add", "--donor", PERSON, REF)       # the same reference
    imager(data, "technicians", "add", "--level", "Niveau 3", TECH)
    des = _destroy(data, "WD-BRI-0001")
    don = json_lines(imager(data, "cert", "donation", REF, "--json").stdout)[0]
    return {"des": des, "don": don}


PARTIES = ("portal", "gap", "briancon", "third", "visitor")


@pytest.fixture(scope="module")
def net(pg: PgServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> Iterator[dict[str, Any]]:
    """Gap and Briançon issue while the portal is down; then it starts and both push.
    The tests run in the visitor's namespace."""
    need_root()
    need(shutil.which("ip") is not None, "needs ip (iproute2) for network namespaces")
    base = tmp_path_factory.mktemp("portal")
    loops = LoopFactory(base)
    with PortalNet(base / "net", PARTIES) as pn:
        ca, ca_file = network_ca(base / "ca")
        tls = portal_tls(base / "tls", pn.address["portal"])
        database = pg.create_database("portal")
        portal = Portal(base / "portal", database, ca_file, tls, host=pn.address["portal"])
        verify_url = f"{portal.url}/verifier"
        gap = station(base / "gap", "Atelier de Gap", verify_url, ca)
        bri = station(base / "briancon", "Atelier de Briançon", verify_url, ca)
        target = ["--portal", portal.url, "--ca", str(tls.ca)]
        briancon = Serve(bri, "--no-local-agent", "--portal", portal.url, "--portal-ca",
                         str(tls.ca), "--portal-every", "2")
        try:
            with pn.inside("briancon"):
                briancon.start()           # its pusher tries, and fails: the portal is down
            docs = {"gap": _issue_gap(gap, loops), "briancon": _issue_briancon(bri)}
            briancon.console(r"push to the portal .* failed \(PortalUnreachable\)")
            with pn.inside("portal"):
                portal.start()
            with pn.inside("gap"):
                pushed = json.loads(imager(gap, "portal", "push", *target, "--batch", "2",
                                           "--json").stdout)
            db = PortalDb.open_url(database)
            with pn.inside("visitor"):
                yield {"base": base, "pg": pg, "ca": ca, "ca_file": ca_file, "tls": tls,
                       "portal": portal, "db": db, "gap": gap, "briancon": bri, "docs": docs,
                       "target": target, "pushed": pushed, "briancon_serve": briancon,
                       "pn": pn}
            db.close()
        finally:
            briancon.close()
            portal.stop()
            loops.detach_all()


def _held(db: PortalDb, data: Path) -> list[dict[str, Any]]:
    """The entries the portal holds of the station of `data`."""
    key = station_keys(Settings(data_dir=data)).fingerprint
    with db.session(readonly=True) as s:
        rows = s.scalars(select(m.LedgerEntry).join(m.Station).where(m.Station.key == key)
                         .order_by(m.LedgerEntry.seq))
        return [r.to_dict() for r in rows]


def _lookup(portal: Portal, doc: dict[str, Any], sha256: str | None = None,
            **headers: str) -> httpx.Response:
    return portal.get("/verifier", params={"id": doc["id"], "sha256": sha256 or doc["sha256"]},
                      headers=headers)


def test_both_stations_ledgers_reach_the_portal_in_batches(net: dict[str, Any]) -> None:
    db, gap, bri = net["db"], net["gap"], net["briancon"]
    assert net["pushed"]["entries"] == 3 and net["pushed"]["batches"] >= 3   # 2 + 1, donations
    until(lambda: _held(db, bri) == _ledger(bri), 60,
          "Briançon's background pusher catches up once the portal answers")
    assert _held(db, gap) == _ledger(gap) and len(_ledger(gap)) == 3
    with db.session(readonly=True) as s:
        stations = {r.name: r for r in s.scalars(select(m.Station))}
        assert len(stations) == 2
        for row in stations.values():
            assert row.head_signed and row.head_seq == len(_ledger(gap if "Gap" in row.name
                                                                   else bri))
        donations = {(r.station_id, r.reference): r for r in s.scalars(select(m.Donation))}
        assert len(donations) == 2 and {ref for _, ref in donations} == {REF}
        names = {r.donor_name for r in donations.values()}
        assert names == {COMPANY, None}              # a private donor's name stays home
        drives = list(s.scalars(select(m.Drive)))
        assert {d.serial for d in drives} >= {"WD-GAP-0001", "WD-BRI-0001"}
        assert all(d.documents for d in drives)
        pdfs = s.scalar(select(func.count()).select_from(m.Document)
                        .where(m.Document.pdf.is_not(None)))
        assert pdfs == 5                             # every document but none withdrawn yet
    for name, docs in net["docs"].items():
        for doc in docs.values():
            said = _lookup(net["portal"], doc, **JSON)
            assert said.status_code == 200, (name, said.text)
            assert said.json()["state"] == "genuine", said.text


def test_pushing_again_sends_nothing(net: dict[str, Any]) -> None:
    with net["pn"].inside("gap"):
        again = json.loads(imager(net["gap"], "portal", "push", *net["target"],
                                  "--json").stdout)
        waiting = json.loads(imager(net["gap"], "portal", "waiting", "--portal",
                                    net["portal"].url, "--json").stdout)
    assert (again["batches"], again["entries"], again["donations"]) == (0, 0, 0)
    assert again["head"]["seq"] == 3
    assert waiting["total"] == 0 and waiting["since"]


def test_a_station_outside_the_network_is_refused(net: dict[str, Any]) -> None:
    url = f"{net['portal'].url}/verifier"
    alone = station(net["base"] / "alone", "Atelier isolé", url, None)     # self-signed
    other_ca = make("Une autre AC", pathlen=1)
    elsewhere = station(net["base"] / "elsewhere", "Atelier d'ailleurs", url, other_ca)
    for data in (alone, elsewhere):
        _destroy_for(data)
        with net["pn"].inside("third"):
            done = imager(data, "portal", "push", *net["target"], check=False)
        assert done.returncode == 2, done.stdout
        assert "station hors du réseau / not a station of the network" in done.stderr, \
            done.stderr
        assert _held(net["db"], data) == []


def _destroy_for(data: Path) -> dict[str, Any]:
    imager(data, "donors", "add", "--kind", "particulier", PERSON)
    imager(data, "donations", "add", "--donor", PERSON, REF)
    imager(data, "technicians", "add", "--level", "Niveau 3", TECH)
    return _destroy(data, f"WD-{data.name.upper()}-9")


def _drop_connections(pg: PgServer) -> None:  # noqa: F811
    import psycopg

    with psycopg.connect(host=str(pg.base), port=5432, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                             "datname = 'portal'").fetchall()
    assert ended


def _batch(data: Path, upto: int) -> Push:
    """A push of the ledger of `data` up to entry `upto`, its head signed by its key, no
    files: enough for the portal to judge the ledger."""
    with Registry.open(Settings(data_dir=data)) as reg:
        ledger = Ledger(reg)
        head = sign_document(ledger.head_document(upto=upto), station_keys(
            Settings(data_dir=data)))
        entries = [e.to_dict() for e in ledger.entries() if e.seq <= upto]
    return Push(ledger=LedgerBatch(entries=entries, head=head.decode()))


def _send(data: Path, net: dict[str, Any], push: Push, party: str = "gap") -> PortalRefused:
    """What the portal answers when the station of `data` sends `push` by hand, from
    the namespace of `party`."""
    with net["pn"].inside(party):
        client = PortalClient(PortalTarget(net["portal"].url, net["tls"].ca),
                              station_keys(Settings(data_dir=data)))
        try:
            with pytest.raises(PortalRefused) as refused:
                client.post(PUSH_PATH, push)
        finally:
            client.close()
    return refused.value


def test_a_forked_ledger_one_going_backwards_or_another_stations_are_refused(
        net: dict[str, Any]) -> None:
    gap, db = net["gap"], net["db"]
    before = _held(db, gap)
    assert len(before) == 3
    backwards = _send(gap, net, _batch(gap, 1))       # a head below the one held
    assert backwards.reason == "backwards", backwards

    fork = copy_keys(gap, net["base"] / "gap-restored")    # the same key, another ledger
    _destroy_for(fork)
    for n in (1, 2):
        _destroy(fork, f"WD-FORK-{n}")
    refused = _send(fork, net, _batch(fork, 3), "third")   # same seq, another hash
    assert refused.reason == "fork", refused
    with net["pn"].inside("third"):
        said = imager(fork, "portal", "push", *net["target"], check=False)
    assert said.returncode == 2 and "un autre registre" in said.stderr, said.stderr

    stolen = _send(net["briancon"], net, _batch(gap, 3),   # Gap's ledger from Briançon
                   "briancon")
    assert stolen.reason == "other-station", stolen
    assert _held(db, gap) == before
    with db.session(readonly=True) as s:
        reasons = set(s.scalars(select(m.PushLog.reason).where(
            m.PushLog.outcome == "refused")))
    assert {"backwards", "fork", "other-station"} <= reasons


def test_a_withdrawal_pushed_later_reaches_the_public_page(net: dict[str, Any]) -> None:
    des = net["docs"]["gap"]["des"]
    imager(net["gap"], "cert", "withdraw", des["id"], "--by", "Hélène Dupré", "--reason", WHY)
    with net["pn"].inside("gap"):
        waiting = json.loads(imager(net["gap"], "portal", "waiting", "--portal",
                                    net["portal"].url, "--json").stdout)
        assert waiting["entries"] == 1
        imager(net["gap"], "portal", "push", *net["target"])
    said = _lookup(net["portal"], des, **JSON).json()
    assert said["state"] == "withdrawn" and said["withdrawal"]["reason"] == WHY
    page = html.unescape(_lookup(net["portal"], des).text)
    assert "Ce document a été retiré" in page and WHY in page
    assert "Hélène Dupré" not in page                 # who decided is not shown


def test_the_public_page_answers_for_an_id_and_its_hash_only(net: dict[str, Any]) -> None:
    portal, eff = net["portal"], net["docs"]["gap"]["eff"]
    qr = urlsplit(qr_text(eff["id"], eff["sha256"],
                          load_profile(Settings(data_dir=net["gap"])).verify_url))
    with portal.client() as http:
        page = http.get(f"{qr.path}?{qr.query}")      # the URL the QR code prints
        assert page.status_code == 200
        text = html.unescape(page.text)
        assert "Ce document est authentique." in text and "Atelier de Gap" in text
        assert TECH not in text
        pdf_sha = hashlib.sha256(Path(eff["pdf"]).read_bytes()).hexdigest()
        short = http.get(f"/v/{eff['id']}/{pdf_sha}", headers=JSON).json()
        assert short["state"] == "genuine" and short["document"]["method_class"]
        sha = eff["sha256"]
        altered = http.get("/verifier", params={    # another hash, whatever it was
            "id": eff["id"], "sha256": ("1" if sha[0] == "0" else "0") + sha[1:]})
        unknown = http.get("/verifier", params={"id": "EFF-2026-ZZZZ-ZZZZ",
                                                "sha256": eff["sha256"]})
        assert altered.status_code == unknown.status_code == 404
        assert altered.content == unknown.content
        sent = http.post("/verifier", files={"file": ("c.pdf", Path(eff["pdf"]).read_bytes(),
                                                       "application/pdf")}, headers=JSON)
        assert sent.json()["state"] == "genuine", sent.text
        bri = net["docs"]["briancon"]["des"]
        private = html.unescape(http.get("/verifier", params={"id": bri["id"],
                                                               "sha256": bri["sha256"]}).text)
        assert "Atelier de Briançon" in private
        assert PERSON not in private and "WD-BRI-0001" not in private and TECH not in private
    _drop_connections(net["pg"])       # PostgreSQL drops the portal's connections:
    assert _lookup(portal, eff, **JSON).json()["state"] == "genuine"    # asked again
    fresh = net["pn"].add_address("visitor")     # a client the portal has not seen yet
    with portal.client(transport=httpx.HTTPTransport(local_address=fresh,
                                                     verify=portal.context())) as http:
        answers = [http.get("/verifier", params={"id": eff["id"], "sha256": eff["sha256"]},
                            headers=JSON).status_code for _ in range(31)]
    assert answers[:30] == [200] * 30 and answers[30] == 429      # per client address


def test_each_party_runs_in_its_own_network_namespace(net: dict[str, Any]) -> None:
    pn, portal, briancon = net["pn"], net["portal"], net["briancon_serve"]

    def where(pid: int) -> str:
        return subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert where(portal.proc.pid) == pn.namespace["portal"]
    assert where(briancon.proc.pid) == pn.namespace["briancon"]
    assert urlsplit(portal.url).hostname == pn.address["portal"] != "127.0.0.1"
    with pytest.raises(httpx.ConnectError):        # not on the visitor's own loopback
        httpx.get(f"https://127.0.0.1:{portal.port}/", verify=False, timeout=5)
