#!/usr/bin/env python3
"""Agents' API under load: 50 simulated agents posting progress at 2 Hz for 60 s,
over plain HTTP and over HTTPS, every request signed.

    .venv/bin/python bench/agents_load.py [--agents 50] [--hz 2] [--seconds 60]
                                          [--resend 0.01] [--peer-seconds 10]
                                          [--modes http,https]

Loopback only, no root: for each mode, `imager serve --no-local-agent` (with
`--tls` for HTTPS: the station serves a certificate from its own TLS CA, made
at first start) runs as a subprocess on a free port of 127.0.0.1 with a fresh
data dir (SQLite registry); the HTTPS agents pin that CA as a real agent does
(imager.agent.tls.StationTrust: TLS 1.3, that CA only). Each
simulated agent registers, reports one made-up drive (`drive_attached` with its
evidence: lsblk's output; the station plans it), and a technician's
`POST /api/v1/drives/{serial}/erase` gives it a queued job. Then every agent
posts one `progress` event of its job per request, `--hz` times a second
(agents spread evenly over the period), each event with its own id and a
growing seq. A failed request (no answer, 5xx) is sent again
with the same event; a `--resend` fraction of the answered events is sent a
second time on purpose and must come back "duplicate".

Checked at the end (exit code 1 when one fails): the station shows the last
progress of every job; in the registry (read after the station stopped), every
event sent is in agent_events, applied, once (its id is the primary key), and
no event the bench did not send is there; no event was answered "applied"
twice; every deliberate resend was answered "duplicate".

Each agent connects once (a first `GET /api/v1/health`, with the TLS handshake
in HTTPS) before the schedule starts, and keeps that connection, as a real agent
does for hours: the latencies are those of an agent at work; connecting is
timed apart (50 agents connecting in the same instant would otherwise make
most of the slowest 1 %).

Printed for each mode: events, requests, latency p50/p95/p99/max, requests/s,
the lateness of the client's own schedule (how late the client woke for a
tick: the client must not be the bottleneck) and both processes' CPU use. The
peer, measured in the same run: `GET /api/v1/health` on the same station, same
agents, same schedule, for `--peer-seconds`; the ratio p99(events) /
p99(health) is what recording an event costs over the bare HTTP(S) + FastAPI
path. Then one table side by side: plain HTTP, HTTPS and the ratio HTTPS/HTTP.
Target (issue 13): p99 of the events < 20 ms with TLS and request proofs
(reported, not asserted). The load average before each mode is printed: with
another busy process on the machine (a test run), the tail figures measure that
process, not the station.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # evidence_maker

from evidence_maker import evidence  # noqa: E402

from imager.agent.client import ProofAuth  # noqa: E402
from imager.agent.tls import StationTrust  # noqa: E402
from imager.certify.keys import keys_dir  # noqa: E402
from imager.protocol.proof import public_hex  # noqa: E402
from imager.settings import Settings  # noqa: E402

TARGET_P99_MS = 20.0  # issue 13: with TLS and every request signed
RETRY_PAUSE = 0.1     # seconds before a failed request is sent again
MAX_TRIES = 50
REQUEST_TIMEOUT = 10.0


@dataclass
class SimAgent:
    """One simulated agent: its own key (every request signed), its job, its seq."""

    index: int
    key: Ed25519PrivateKey
    job: int = 0
    seq: int = 0

    def event(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        """A new event, shaped as the agent's outbox makes them."""
        self.seq += 1
        return {"id": uuid.uuid4().hex, "seq": self.seq,
                "at": datetime.now(UTC).isoformat(), "v": 2, "kind": kind, "data": data}


@dataclass
class Tally:
    """What the client saw during one phase."""

    latencies: list[float] = field(default_factory=list)     # seconds, every request
    lateness: list[float] = field(default_factory=list)      # seconds, woken late for a tick
    behind: int = 0            # ticks already past when the previous request returned
    requests: int = 0
    failures: int = 0          # no answer or 5xx: sent again
    given_up: int = 0
    answers: dict[str, Counter[str]] = field(default_factory=dict)  # event id -> outcomes
    sent: set[str] = field(default_factory=set)
    resent: list[str] = field(default_factory=list)          # deliberate resends
    last_done: dict[int, int] = field(default_factory=dict)  # job -> last done sent
    connects: list[float] = field(default_factory=list)      # seconds, connecting: below
    wall: float = 0.0


# -- the station ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Mode:
    """How the agents reach the station."""

    name: str
    tls: bool


MODES = {"http": Mode("HTTP", tls=False), "https": Mode("HTTPS", tls=True)}


@dataclass
class Station:
    """One `imager serve` in `data`, and how its clients reach it: an HTTPS one
    is trusted through its own TLS CA only, as an agent pins it."""

    data: Path
    mode: Mode
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.mode.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        """The station's TLS CA, written at its first start."""
        return keys_dir(Settings(data_dir=self.data)) / "tls-ca.crt"

    def verify(self) -> ssl.SSLContext | bool:
        """A new pinned context for one client (each agent has its own); plain HTTP
        has no certificate to check (True would load certifi's bundle into every
        client, a second of the bench's CPU for 50 agents)."""
        return StationTrust(self.ca).context() if self.mode.tls else False

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(**{"base_url": self.url, "timeout": REQUEST_TIMEOUT,
                               "verify": self.verify(), **options})

    def async_client(self, auth: httpx.Auth) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=REQUEST_TIMEOUT,
                                 verify=self.verify(), auth=auth)

    def start(self) -> None:
        env = {**os.environ, "IMAGER_DATA_DIR": str(self.data)}
        env.pop("IMAGER_DB_URL", None)
        argv = [sys.executable, "-m", "imager", "serve", "--listen", f"127.0.0.1:{self.port}",
                "--no-local-agent", "--auto-erase", "never", "--no-auto-certify",
                *(["--tls"] if self.mode.tls else [])]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).resolve().parent.parent)
        self.wait_health()

    @property
    def log(self) -> Path:
        return self.data.parent / "station.log"

    def wait_health(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the station exited ({self.proc.returncode}) before "
                                 f"answering: see {self.log}")
            try:
                if not self.mode.tls or self.ca.exists():
                    with self.client(timeout=1.0) as http:
                        if http.get("/api/v1/health").status_code == 200:
                            return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the station at {self.url} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def log_problems(log: Path) -> list[str]:
    """The station's warnings, errors and tracebacks."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ("WARNING", "ERROR", "Traceback"))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- setting up the agents -------------------------------------------------------


def post_json(http: httpx.Client, path: str, auth: str | httpx.Auth,
              body: dict[str, Any]) -> Any:
    """POST as the operator (a token) or as an agent (its proof)."""
    resp = http.post(path, json=body, auth=BearerAuth(auth) if isinstance(auth, str) else auth)
    if resp.status_code != 200:
        raise SystemExit(f"setup: POST {path} answered {resp.status_code}: {resp.text}")
    return resp.json()


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def enrol(http: httpx.Client, tokens: dict[str, str], index: int, run: str) -> SimAgent:
    """Enrol agent `index` (its key; a technician approves it), report its drive,
    have a technician queue its erasure."""
    agent = SimAgent(index, Ed25519PrivateKey.generate())
    reg = post_json(http, "/api/v1/agents", ProofAuth(agent.key), {
        "public_key": public_hex(agent.key), "name": f"sim-{index:03d}", "kind": "dock",
        "host": f"bench-{run}"})
    post_json(http, f"/api/v1/agents/{reg['id']}/approve", tokens["operator"],
              {"by": "bench"})
    serial = f"SIM-{run}-{index:03d}"
    ev = agent.event("drive_attached", {"evidence": evidence(
        f"/dev/sim{index}", 1 << 30, serial=serial, model="SIM", transport="sata")})
    outcome = post_json(http, "/api/v1/events", ProofAuth(agent.key),
                        {"events": [ev]})["results"][0]
    if outcome["outcome"] != "applied":
        raise SystemExit(f"setup: drive_attached of agent {index} was {outcome}")
    agent.job = int(post_json(http, f"/api/v1/drives/{serial}/erase", tokens["operator"],
                              {})["job"])
    return agent


# -- the load ------------------------------------------------------------------------


async def send(client: httpx.AsyncClient, ev: dict[str, Any], tally: Tally) -> str | None:
    """POST one event until the station answers for it; its outcome (None: gave up)."""
    for _ in range(MAX_TRIES):
        t0 = time.perf_counter()
        try:
            resp = await client.post("/api/v1/events", json={"events": [ev]})
        except httpx.HTTPError:
            resp = None
        tally.requests += 1
        if resp is not None and resp.status_code < 500:
            tally.latencies.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                return f"http {resp.status_code}"
            outcome = str(resp.json()["results"][0]["outcome"])
            tally.answers.setdefault(ev["id"], Counter())[outcome] += 1
            return outcome
        tally.failures += 1
        await asyncio.sleep(RETRY_PAUSE)
    tally.given_up += 1
    return None


async def tick_at(target: float, tally: Tally) -> None:
    """Sleep until `target` (loop clock); note how late the client woke."""
    delay = target - time.monotonic()
    if delay <= 0:
        tally.behind += 1
        return
    await asyncio.sleep(delay)
    tally.lateness.append(time.monotonic() - target)


async def progress_agent(agent: SimAgent, client: httpx.AsyncClient, start: float,
                         ticks: int, args: argparse.Namespace, tally: Tally,
                         rng: random.Random) -> None:
    period = 1.0 / args.hz
    for k in range(1, ticks + 1):
        await tick_at(start + (k - 1) * period, tally)
        ev = agent.event("progress", {"job": agent.job, "phase": "pass", "index": 0,
                                      "done": k, "total": ticks})
        tally.sent.add(ev["id"])
        tally.last_done[agent.job] = k
        if await send(client, ev, tally) is not None and rng.random() < args.resend:
            tally.resent.append(ev["id"])
            await send(client, ev, tally)


async def health_agent(client: httpx.AsyncClient, start: float, ticks: int, hz: float,
                       tally: Tally) -> None:
    for k in range(ticks):
        await tick_at(start + k / hz, tally)
        t0 = time.perf_counter()
        try:
            status = (await client.get("/api/v1/health")).status_code
        except httpx.HTTPError:
            status = 0
        tally.requests += 1
        if status == 200:
            tally.latencies.append(time.perf_counter() - t0)
        else:
            tally.failures += 1


async def connect(client: httpx.AsyncClient) -> float:
    """Open the client's connection with a first `GET /api/v1/health`; how long it took."""
    t0 = time.perf_counter()
    (await client.get("/api/v1/health")).raise_for_status()
    return time.perf_counter() - t0


async def phase(station: Station, agents: list[SimAgent], args: argparse.Namespace,
                seconds: float, health: bool) -> Tally:
    """Every agent on its own connection, spread evenly over one period."""
    tally, rng = Tally(), random.Random(20260)
    ticks = max(1, round(seconds * args.hz))
    clients = [station.async_client(ProofAuth(a.key)) for a in agents]
    # An agent connects once and reports for hours on that connection: each one
    # connects (TLS handshake and all) before the schedule starts, timed apart.
    tally.connects = await asyncio.gather(*(connect(c) for c in clients))
    start = time.monotonic() + 0.2
    offsets = [start + i / (len(agents) * args.hz) for i in range(len(agents))]
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(
            health_agent(c, s, ticks, args.hz, tally) if health
            else progress_agent(a, c, s, ticks, args, tally, rng)
            for a, c, s in zip(agents, clients, offsets, strict=True)))
    finally:
        tally.wall = time.perf_counter() - t0
        await asyncio.gather(*(c.aclose() for c in clients))
    return tally


Cpu = tuple[float, float]   # station, bench: CPU time over wall time (1.0 = one core)


def measured(proc: subprocess.Popen[bytes], run: Coroutine[Any, Any, Tally]
             ) -> tuple[Tally, Cpu]:
    """Run one phase; with the station's and this process's CPU use."""
    server0, client0 = cpu_seconds(proc.pid), time.process_time()
    tally = asyncio.run(run)
    server = (cpu_seconds(proc.pid) - server0) / tally.wall
    return tally, (server, (time.process_time() - client0) / tally.wall)


# -- checks --------------------------------------------------------------------------


@dataclass
class Verdict:
    lost: int = 0                 # sent, not in the registry
    unknown: int = 0              # in the registry, never sent
    not_applied: int = 0          # recorded refused (or anything but applied)
    applied_twice: int = 0        # answered "applied" more than once
    resend_not_duplicate: int = 0
    stale_progress: int = 0       # the station shows another last progress
    db_events: int = 0
    applied: int = 0              # recorded applied

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unknown or self.not_applied or self.applied_twice
                    or self.resend_not_duplicate or self.stale_progress)


def check_progress(station: Station, operator: str, tally: Tally, verdict: Verdict) -> None:
    """The station's view of each job shows the last progress sent."""
    with station.client(headers={"Authorization": f"Bearer {operator}"}) as http:
        for job, done in tally.last_done.items():
            shown = (http.get(f"/api/v1/jobs/{job}").json().get("progress") or {})
            verdict.stale_progress += shown.get("done") != done


def check_registry(db: Path, tally: Tally, verdict: Verdict) -> None:
    """Every event sent is in agent_events, applied, and nothing else is."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = dict(con.execute(
            "SELECT id, outcome FROM agent_events WHERE kind = 'progress'").fetchall())
    verdict.db_events = len(rows)
    verdict.lost = len(tally.sent - rows.keys())
    verdict.unknown = len(rows.keys() - tally.sent)
    verdict.applied = sum(outcome == "applied" for outcome in rows.values())
    verdict.not_applied = verdict.db_events - verdict.applied
    verdict.applied_twice = sum(c["applied"] > 1 for c in tally.answers.values())
    verdict.resend_not_duplicate = sum(
        tally.answers[i]["duplicate"] < 1 for i in tally.resent)


# -- report --------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def latency_line(name: str, tally: Tally, cpu: Cpu) -> str:
    lat = tally.latencies
    return (f"  {name:<18} {len(lat):>7} {pct(lat, 50):>7.1f} {pct(lat, 95):>7.1f} "
            f"{pct(lat, 99):>7.1f} {1000 * max(lat):>8.1f} {tally.requests / tally.wall:>8.1f}"
            f" {pct(tally.lateness or [0.0], 99):>9.1f} {tally.behind:>7}"
            f" {100 * cpu[0]:>7.0f}% {100 * cpu[1]:>6.0f}%")


@dataclass
class Result:
    """One mode's run: what the client saw, the CPU, what the registry holds."""

    mode: Mode
    load: Tally
    peer: Tally
    cpu_load: Cpu
    cpu_peer: Cpu
    verdict: Verdict
    problems: list[str]
    load_before: float     # the machine's load average before the mode ran


def report(args: argparse.Namespace, r: Result) -> None:
    load, verdict = r.load, r.verdict
    duplicates = sum(c["duplicate"] for c in load.answers.values())
    print(f"{r.mode.name}: {args.agents} agents x {args.hz:g} Hz, {args.seconds:g} s of "
          f"progress events, every request signed (peer: GET /api/v1/health, "
          f"{args.peer_seconds:g} s), loopback, {os.cpu_count()} cores, load average before "
          f"the run {r.load_before:.2f}")
    print(f"  {'':<18} {'requests':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>8} {'req/s':>8} {'late p99':>9} {'behind':>7} {'station':>8} "
          f"{'bench':>7}")
    print(latency_line("POST events", load, r.cpu_load))
    print(latency_line("GET health (peer)", r.peer, r.cpu_peer))
    p99, peer99 = pct(load.latencies, 99), pct(r.peer.latencies, 99)
    p50, peer50 = pct(load.latencies, 50), pct(r.peer.latencies, 50)
    print(f"  ratio events / health: p99 {p99 / peer99:.2f}, p50 {p50 / peer50:.2f}")
    print(f"  each agent's connection, before the schedule (first GET /api/v1/health"
          f"{', TLS handshake included' if r.mode.tls else ''}): p50 "
          f"{pct(load.connects, 50):.1f} ms, max {1000 * max(load.connects):.1f} ms")
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms: "
          f"{'met' if p99 < TARGET_P99_MS else 'NOT met'} ({p99:.1f} ms)")
    print(f"  events sent {len(load.sent)}, requests {load.requests}, failed requests "
          f"(sent again) {load.failures}, given up {load.given_up}")
    print(f"  deliberate resends {len(load.resent)}, answered duplicate {duplicates}, "
          f"resends not answered duplicate {verdict.resend_not_duplicate}")
    print(f"  registry: {verdict.db_events} progress events recorded; lost {verdict.lost}, "
          f"applied twice {verdict.applied_twice}, not applied {verdict.not_applied}, "
          f"never sent {verdict.unknown}")
    print(f"  jobs whose last progress the station does not show: {verdict.stale_progress}")
    print("  OK: no event lost or applied twice" if verdict.ok
          else "  FAILED: see the counts above")
    print(f"  station log: {len(r.problems)} warnings/errors", *r.problems[:10],
          sep="\n    ")


def side_by_side(results: list[Result]) -> None:
    """The modes' figures in columns (plain HTTP first, whatever the order they ran
    in), with the ratio HTTPS/HTTP."""
    order = list(MODES.values())
    results = sorted(results, key=lambda r: order.index(r.mode))
    first, last = results[0], results[-1]
    names = [r.mode.name for r in results]
    print(f"\n{' vs '.join(names)}: POST /api/v1/events, every request signed; "
          f"{os.cpu_count()} cores shared with other processes (load average before each: "
          f"{', '.join(f'{r.load_before:.2f}' for r in results)})")
    print(f"  {'':<26}" + "".join(f"{n:>10}" for n in names)
          + f"{last.mode.name + '/' + first.mode.name:>14}")
    rows: list[tuple[str, Callable[[Result], float], str]] = [    # "d": a count
        ("latency p50 ms", lambda r: pct(r.load.latencies, 50), ".1f"),
        ("latency p95 ms", lambda r: pct(r.load.latencies, 95), ".1f"),
        ("latency p99 ms", lambda r: pct(r.load.latencies, 99), ".1f"),
        ("health p99 ms (peer)", lambda r: pct(r.peer.latencies, 99), ".1f"),
        ("connect p50 ms (once)", lambda r: pct(r.load.connects, 50), ".1f"),
        ("connect max ms (once)", lambda r: 1000 * max(r.load.connects), ".1f"),
        ("station CPU %", lambda r: 100 * r.cpu_load[0], ".0f"),
        ("events sent", lambda r: len(r.load.sent), "d"),
        ("events applied", lambda r: r.verdict.applied, "d"),
        ("lost", lambda r: r.verdict.lost, "d"),
        ("applied twice", lambda r: r.verdict.applied_twice, "d"),
    ]
    for label, value, fmt in rows:
        cells = "".join(f"{value(r):>10{fmt}}" for r in results)
        ratio = f"{value(last) / value(first):>14.2f}" if fmt != "d" and value(first) else ""
        print(f"  {label:<26}{cells}{ratio}")


# -- main ------------------------------------------------------------------------------


def run_mode(tmp: Path, mode: Mode, args: argparse.Namespace) -> Result:
    """A fresh station in `mode`, its agents enrolled, the peer then the load."""
    data = tmp / mode.name.lower() / "data"
    data.mkdir(parents=True)
    load_before = os.getloadavg()[0]    # another busy process skews the figures
    station = Station(data, mode)
    try:
        station.start()
        assert station.proc is not None
        tokens = json.loads((data / "tokens.json").read_text())
        run = uuid.uuid4().hex[:6]
        with station.client() as http:
            agents = [enrol(http, tokens, i, run) for i in range(args.agents)]
        peer, cpu_peer = measured(station.proc,
                                  phase(station, agents, args, args.peer_seconds, True))
        load, cpu_load = measured(station.proc,
                                  phase(station, agents, args, args.seconds, False))
        verdict = Verdict()
        check_progress(station, tokens["operator"], load, verdict)
    finally:
        station.stop()
        problems = log_problems(station.log) if station.log.exists() else []
    check_registry(data / "registry.sqlite3", load, verdict)
    return Result(mode, load, peer, cpu_load, cpu_peer, verdict, problems, load_before)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--hz", type=float, default=2.0, help="progress events per agent per s")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--resend", type=float, default=0.01,
                    help="fraction of answered events sent a second time on purpose")
    ap.add_argument("--peer-seconds", type=float, default=10.0,
                    help="duration of the GET /api/v1/health peer phase")
    ap.add_argument("--modes", default="http,https",
                    help="the modes to run, one after the other (default http,https)")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes {args.modes!r}: give http, https or http,https")
    results = []
    with tempfile.TemporaryDirectory(prefix="imager-bench-") as tmp:
        for name in modes:
            results.append(run_mode(Path(tmp), MODES[name], args))
            report(args, results[-1])
    if len(results) > 1:
        side_by_side(results)
    return 0 if all(r.verdict.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
