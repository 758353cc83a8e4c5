#!/usr/bin/env python3
"""Public verifications per second on the network's portal, and their latency, next
to the station's own verification page measured in the same run.

    .venv/bin/python bench/portal_verify.py [--documents 20] [--rate 200] [--seconds 10]
                                            [--workers 16] [--burst-seconds 5]

Loopback only; root only for PostgreSQL's sake (it runs as `postgres`). Set up: a
network CA; a station whose key it certified (`imager keys csr` / `install`) issues
`--documents` destruction records with its own code (imager.registry.issue), then
pushes them (`imager portal push`) to `imager portal serve` on a throwaway
PostgreSQL server, over HTTPS with a test CA's certificate. The station itself runs
`imager serve --tls --no-local-agent` on the same data dir (SQLite registry), its
page answering the same documents from its files and ledger.

Each server gets the same two loads, as a QR code's visitors send them: GET
`/verifier?id=…&sha256=…` of a real document (9 in 10) or of a real id with another
hash (1 in 10, the 404 page), HTML as a browser asks it:
- steady: `--rate` requests a second for `--seconds` (open loop: each request leaves
  at its time, whatever the others do), latency p50/p95/p99/max;
- burst: `--workers` clients asking as fast as they can for `--burst-seconds`: the
  most verifications a second it answers.
Both pages limit lookups per client address (30 a minute): the requests come from
as many loopback addresses (127.0.x.y) as that takes, each with its own HTTPS
connection made before the clock starts. Every answer is checked (200 genuine, or
404). Target (issue 17): the portal answers 200/s with p99 < 100 ms; printed, with
the ratio portal/station, not asserted.

Printed for each: the steady load's rate, latency percentiles, the server's CPU per
request (the portal's with its PostgreSQL backends'), the client's own CPU per
request and how late it sent (p99 of its schedule: a late client's figures are its
own), the burst's rate and p99. The load average before each run is printed: the
load and the servers share this machine's cores with whatever else runs on it, and
the tail figures measure that too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tests' CA maker, network and PostgreSQL

from clirun import imager  # noqa: E402
from portal_net import Portal, network_ca, portal_tls, station  # noqa: E402
from station_proc import Serve  # noqa: E402
from test_postgresql import PgServer, _as_user, _bindir  # noqa: E402

from imager.model import DriveIdentity  # noqa: E402
from imager.registry.issue import Issuer  # noqa: E402
from imager.registry.jobs import upsert_drive  # noqa: E402
from imager.settings import Settings  # noqa: E402
from imager.store.db import Registry  # noqa: E402

TARGET_RATE, TARGET_P99_MS = 200.0, 100.0
PER_ADDRESS = 30            # lookups a minute one address may ask (imager.web.verify)
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def issue(data: Path, count: int) -> list[tuple[str, str]]:
    """`count` destruction records of this station: (id, sha256) of each."""
    settings = Settings(data_dir=data)
    with Registry.open(settings) as reg:
        issuer = Issuer(settings, reg)
        out = []
        for n in range(count):
            ident = DriveIdentity(path="/dev/none", size=500107862016, model="WDC WD5000LPLX",
                                  serial=f"BENCH-{n:04d}", transport="sata", rotational=True)
            with reg.session() as s:
                upsert_drive(s, ident)
            done = issuer.destruction(ident.key, technique="shred", witness="Hélène Dupré")
            out.append((done.id, done.sha256))
        return out


@dataclass(frozen=True)
class Target:
    """A server answering the verification page over HTTPS, as the load sees it."""

    name: str
    url: str
    context: Callable[[], ssl.SSLContext | bool]
    health: str
    pid: int
    database: int | None = None      # PostgreSQL's postmaster: its backends count too

    def cpu(self) -> float:
        """User + system CPU seconds so far of its process, and of the database's
        backends (Linux /proc)."""
        pids = [self.pid, *(_children(self.database) if self.database else [])]
        return sum(_cpu(pid) for pid in pids)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0                    # ended meanwhile
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    reconnects: int = 0
    late: list[float] = field(default_factory=list)   # the client's schedule, seconds
    wall: float = 0.0
    cpu: float = 0.0            # the server's
    client_cpu: float = 0.0     # this process's: the load's own cost, on the same cores

    def pct(self, q: float, of: list[float] | None = None) -> float:
        ordered = sorted(self.latencies if of is None else of)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0


def address(i: int) -> str:
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


async def clients(server: Target, count: int, first: int) -> list[httpx.AsyncClient]:
    """`count` clients, each from its own loopback address, connected already."""
    made = []
    for i in range(first, first + count):
        transport = httpx.AsyncHTTPTransport(local_address=address(i),
                                             verify=server.context())
        client = httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30,
                                   headers=BROWSER)
        await client.get(server.health)
        made.append(client)
    return made


def query(docs: list[tuple[str, str]], rng: random.Random) -> tuple[dict[str, str], int]:
    """A lookup's parameters and the status it must get."""
    doc_id, sha = rng.choice(docs)
    if rng.random() < 0.1:
        return {"id": doc_id, "sha256": sha[::-1]}, 404
    return {"id": doc_id, "sha256": sha}, 200


async def one(client: httpx.AsyncClient, docs: list[tuple[str, str]], rng: random.Random,
              run: Run) -> None:
    params, status = query(docs, rng)
    t0 = time.perf_counter()
    try:
        answer = await client.get("/verifier", params=params)
    except httpx.RemoteProtocolError:     # a kept connection the server closed meanwhile
        run.reconnects += 1               # (uvicorn: after 5 s idle): timed with the new one
        answer = await client.get("/verifier", params=params)
    run.latencies.append(time.perf_counter() - t0)
    if answer.status_code != status or (status == 200 and "authentique" not in answer.text):
        run.wrong.append(f"{answer.status_code} for {params}")


async def steady(server: Target, docs: list[tuple[str, str]], rate: float, seconds: float,
                 first: int) -> Run:
    total = int(rate * seconds)
    pool = await clients(server, -(-total // (PER_ADDRESS - 1)), first)
    rng, run = random.Random(17), Run()
    cpu, mine, start = server.cpu(), time.process_time(), time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.late.append(max(0.0, -delay))
        tasks.append(asyncio.create_task(one(pool[i % len(pool)], docs, rng, run)))
    await asyncio.gather(*tasks)
    run.wall, run.cpu = time.perf_counter() - start, server.cpu() - cpu
    run.client_cpu = time.process_time() - mine
    for client in pool:
        await client.aclose()
    return run


async def burst(server: Target, docs: list[tuple[str, str]], workers: int, seconds: float,
                first: int) -> Run:
    pool = await clients(server, 400, first)        # 12 000 lookups at most
    rng, run, used = random.Random(18), Run(), [0] * len(pool)
    cpu, mine, start = server.cpu(), time.process_time(), time.perf_counter()

    async def worker(w: int) -> None:
        i = w
        while time.perf_counter() - start < seconds:
            while used[i % len(pool)] >= PER_ADDRESS - 1:
                i += 1
            used[i % len(pool)] += 1
            await one(pool[i % len(pool)], docs, rng, run)
            i += workers
    await asyncio.gather(*(worker(w) for w in range(workers)))
    run.wall, run.cpu = time.perf_counter() - start, server.cpu() - cpu
    run.client_cpu = time.process_time() - mine
    for client in pool:
        await client.aclose()
    return run


def measure(server: Target, docs: list[tuple[str, str]], args: argparse.Namespace,
            first: int) -> tuple[Run, Run]:
    print(f"{server.name}: load average {os.getloadavg()[0]:.2f} before the run", flush=True)
    quiet = asyncio.run(steady(server, docs, args.rate, args.seconds, first))
    loud = asyncio.run(burst(server, docs, args.workers, args.burst_seconds, first + 1000))
    for run in (quiet, loud):
        if run.wrong:
            raise SystemExit(f"{server.name}: {len(run.wrong)} wrong answers: {run.wrong[:3]}")
    return quiet, loud


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--rate", type=float, default=TARGET_RATE)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--burst-seconds", type=float, default=5.0)
    args = parser.parse_args()
    bindir = _bindir()
    if bindir is None:
        raise SystemExit("needs the PostgreSQL server binaries (initdb, pg_ctl)")
    base = Path(tempfile.mkdtemp(prefix="imager-bench-portal-"))
    pg = PgServer(bindir, Path(tempfile.mkdtemp(prefix="imager-pg-", dir="/tmp")), _as_user())
    if pg.as_user:
        shutil.chown(pg.base, "postgres", "postgres")
    portal: Portal | None = None
    home: Serve | None = None
    try:
        pg.start()
        ca, ca_file = network_ca(base / "ca")
        tls = portal_tls(base / "tls")
        portal = Portal(base / "portal", pg.create_database("portal"), ca_file, tls)
        gap = station(base / "gap", "Atelier de Gap", f"{portal.url}/verifier", ca)
        t0 = time.perf_counter()
        docs = issue(gap, args.documents)
        print(f"{len(docs)} documents issued in {time.perf_counter() - t0:.1f} s", flush=True)
        portal.start()
        pushed = json.loads(imager(gap, "portal", "push", "--portal", portal.url, "--ca",
                                   str(tls.ca), "--json").stdout)
        print(f"pushed: {pushed['entries']} entries in {pushed['seconds']:.2f} s", flush=True)
        home = Serve(gap, "--no-local-agent", "--auto-erase", "never", "--tls", tls=True)
        home.start()
        home.console("Station")                  # its console is read from now on
        assert portal.proc is not None and home.proc is not None
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        targets = (Target("portal", portal.url, portal.context, "/api/portal/v1/health",
                          portal.proc.pid, postmaster),
                   Target("station", home.url, home.verify, "/api/v1/health", home.proc.pid))
        results = {t.name: measure(t, docs, args, first)
                   for t, first in zip(targets, (0, 3000), strict=True)}
    finally:
        if home is not None:
            home.close()
        if portal is not None:
            portal.stop()
        pg.stop()
        shutil.rmtree(pg.base, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    report(results, args)
    return 0


def report(results: dict[str, tuple[Run, Run]], args: argparse.Namespace) -> None:
    print(f"\nsteady {args.rate:g}/s for {args.seconds:g} s; burst {args.workers} clients "
          f"for {args.burst_seconds:g} s (HTTPS, HTML pages, 1 in 10 a 404)")
    print(f"{'':9}{'sent/s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'cpu ms/req':>11}{'client':>8}{'late99':>8}{'burst/s':>9}{'b p99':>8}"
          f"{'reconn':>8}")
    for name, (quiet, loud) in results.items():
        print(f"{name:9}{quiet.rate:8.0f}{quiet.pct(.5):8.1f}{quiet.pct(.95):8.1f}"
              f"{quiet.pct(.99):8.1f}{quiet.pct(1):8.1f}"
              f"{1000 * quiet.cpu / len(quiet.latencies):11.2f}"
              f"{1000 * quiet.client_cpu / len(quiet.latencies):8.2f}"
              f"{quiet.pct(.99, quiet.late):8.1f}{loud.rate:9.0f}"
              f"{loud.pct(.99):8.1f}{quiet.reconnects + loud.reconnects:8d}")
    (pq, pb), (sq, sb) = results["portal"], results["station"]
    print(f"ratio portal/station: p99 {pq.pct(.99) / sq.pct(.99):.2f}, most per second "
          f"{pb.rate / sb.rate:.2f}")
    met = pq.rate >= 0.97 * TARGET_RATE and pq.pct(.99) < TARGET_P99_MS \
        and args.rate >= TARGET_RATE
    print(f"target {TARGET_RATE:g}/s with p99 < {TARGET_P99_MS:g} ms on the portal: "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
