#!/usr/bin/env python3
"""Agents' API under load: 50 simulated agents posting progress at 2 Hz for 60 s.

    .venv/bin/python bench/agents_load.py [--agents 50] [--hz 2] [--seconds 60]
                                          [--resend 0.01] [--peer-seconds 10]

Loopback only, no root: `imager serve --no-local-agent` runs as a subprocess on
a free port of 127.0.0.1 with a fresh data dir (SQLite registry). Each
simulated agent registers, reports one made-up drive (`drive_attached` with a
real plan), and a technician's `POST /api/v1/drives/{serial}/erase` gives it a
queued job. Then every agent posts one `progress` event of its job per request,
`--hz` times a second (agents spread evenly over the period), each event with
its own id and a growing seq. A failed request (no answer, 5xx) is sent again
with the same event; a `--resend` fraction of the answered events is sent a
second time on purpose and must come back "duplicate".

Checked at the end (exit code 1 when one fails): the station shows the last
progress of every job; in the registry (read after the station stopped), every
event sent is in agent_events, applied, once (its id is the primary key), and
no event the bench did not send is there; no event was answered "applied"
twice; every deliberate resend was answered "duplicate".

Printed: events, requests, latency p50/p90/p99/max, requests/s, the lateness
of the client's own schedule (how late the client woke for a tick: the client
must not be the bottleneck) and both processes' CPU use. The peer, measured
in the same run: `GET /api/v1/health` on the same station, same agents, same
schedule, for `--peer-seconds`; the ratio p99(events) / p99(health) is what
recording an event costs over the bare HTTP + FastAPI path. Target: p99 of
the events < 50 ms on this machine (reported, not asserted). The load average
before the run is printed: with another busy process on the machine (a test
run), the tail figures measure that process, not the station.
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
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imager.agent.client import ProofAuth  # noqa: E402
from imager.erase.plan import plan_for  # noqa: E402
from imager.erase.policy import load as load_policy  # noqa: E402
from imager.inventory.capabilities import DriveCapabilities  # noqa: E402
from imager.model import DriveIdentity  # noqa: E402
from imager.protocol.proof import public_hex  # noqa: E402

TARGET_P99_MS = 50.0
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
                "at": datetime.now(UTC).isoformat(), "kind": kind, "data": data}


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
    wall: float = 0.0


# -- the station ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_station(data: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IMAGER_DATA_DIR": str(data)}
    env.pop("IMAGER_DB_URL", None)
    argv = [sys.executable, "-m", "imager", "serve", "--listen", f"127.0.0.1:{port}",
            "--no-local-agent", "--auto-erase", "never", "--no-auto-certify"]
    with open(data.parent / "station.log", "wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)


def log_problems(log: Path) -> list[str]:
    """The station's warnings, errors and tracebacks."""
    return [line for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ("WARNING", "ERROR", "Traceback"))]


def wait_health(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the station exited ({proc.returncode}) before answering")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the station at {url} did not answer within {timeout:.0f} s")


def stop_station(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- setting up the agents -------------------------------------------------------


def made_up_plan() -> dict[str, Any]:
    caps = DriveCapabilities(identity=DriveIdentity(path="/dev/x", size=1 << 30),
                             medium="unknown", transport="sata")
    return plan_for(caps, load_policy(None), method="nist-clear").to_dict()


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


def enrol(http: httpx.Client, tokens: dict[str, str], index: int, run: str,
          plan: dict[str, Any]) -> SimAgent:
    """Enrol agent `index` (its key; a technician approves it), report its drive,
    have a technician queue its erasure."""
    agent = SimAgent(index, Ed25519PrivateKey.generate())
    reg = post_json(http, "/api/v1/agents", ProofAuth(agent.key), {
        "public_key": public_hex(agent.key), "name": f"sim-{index:03d}", "kind": "dock",
        "host": f"bench-{run}"})
    post_json(http, f"/api/v1/agents/{reg['id']}/approve", tokens["operator"],
              {"by": "bench"})
    serial = f"SIM-{run}-{index:03d}"
    identity = {"path": f"/dev/sim{index}", "size": 1 << 30, "serial": serial,
                "model": "SIM", "transport": "sata"}
    ev = agent.event("drive_attached", {"identity": identity, "plan": plan, "problems": []})
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


async def phase(url: str, agents: list[SimAgent], args: argparse.Namespace,
                seconds: float, health: bool) -> Tally:
    """Every agent on its own connection, spread evenly over one period."""
    tally, rng = Tally(), random.Random(20260)
    ticks = max(1, round(seconds * args.hz))
    clients = [httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT, auth=ProofAuth(a.key))
               for a in agents]
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

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unknown or self.not_applied or self.applied_twice
                    or self.resend_not_duplicate or self.stale_progress)


def check_progress(url: str, operator: str, tally: Tally, verdict: Verdict) -> None:
    """The station's view of each job shows the last progress sent."""
    headers = {"Authorization": f"Bearer {operator}"}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as http:
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
    verdict.not_applied = sum(outcome != "applied" for outcome in rows.values())
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
    return (f"  {name:<18} {len(lat):>7} {pct(lat, 50):>7.1f} {pct(lat, 90):>7.1f} "
            f"{pct(lat, 99):>7.1f} {1000 * max(lat):>8.1f} {tally.requests / tally.wall:>8.1f}"
            f" {pct(tally.lateness or [0.0], 99):>9.1f} {tally.behind:>7}"
            f" {100 * cpu[0]:>7.0f}% {100 * cpu[1]:>6.0f}%")


def report(args: argparse.Namespace, load: Tally, peer: Tally, cpus: list[Cpu],
           verdict: Verdict) -> None:
    duplicates = sum(c["duplicate"] for c in load.answers.values())
    print(f"{args.agents} agents x {args.hz:g} Hz, {args.seconds:g} s of progress events "
          f"(peer: GET /api/v1/health, {args.peer_seconds:g} s), loopback, "
          f"{os.cpu_count()} cores, load average before the run {args.load_before:.2f}")
    print(f"  {'':<18} {'requests':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>8} {'req/s':>8} {'late p99':>9} {'behind':>7} {'station':>8} "
          f"{'bench':>7}")
    print(latency_line("POST events", load, cpus[0]))
    print(latency_line("GET health (peer)", peer, cpus[1]))
    p99, peer99 = pct(load.latencies, 99), pct(peer.latencies, 99)
    p50, peer50 = pct(load.latencies, 50), pct(peer.latencies, 50)
    print(f"  ratio events / health: p99 {p99 / peer99:.2f}, p50 {p50 / peer50:.2f}")
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


# -- main ------------------------------------------------------------------------------


def bench(tmp: Path, args: argparse.Namespace) -> int:
    data, port = tmp / "data", free_port()
    url = f"http://127.0.0.1:{port}"
    data.mkdir()
    proc = start_station(data, port)
    try:
        wait_health(url, proc)
        tokens = json.loads((data / "tokens.json").read_text())
        run, plan = uuid.uuid4().hex[:6], made_up_plan()
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
            agents = [enrol(http, tokens, i, run, plan) for i in range(args.agents)]
        peer, cpu_peer = measured(proc, phase(url, agents, args, args.peer_seconds, True))
        load, cpu_load = measured(proc, phase(url, agents, args, args.seconds, False))
        verdict = Verdict()
        check_progress(url, tokens["operator"], load, verdict)
    finally:
        stop_station(proc)
        problems = log_problems(tmp / "station.log")
    check_registry(data / "registry.sqlite3", load, verdict)
    report(args, load, peer, [cpu_load, cpu_peer], verdict)
    print(f"  station log: {len(problems)} warnings/errors", *problems[:10], sep="\n    ")
    return 0 if verdict.ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--hz", type=float, default=2.0, help="progress events per agent per s")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--resend", type=float, default=0.01,
                    help="fraction of answered events sent a second time on purpose")
    ap.add_argument("--peer-seconds", type=float, default=10.0,
                    help="duration of the GET /api/v1/health peer phase")
    args = ap.parse_args()
    args.load_before = os.getloadavg()[0]   # another busy process skews the figures
    with tempfile.TemporaryDirectory(prefix="imager-bench-") as tmp:
        return bench(Path(tmp), args)


if __name__ == "__main__":
    sys.exit(main())
