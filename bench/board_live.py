#!/usr/bin/env python3
"""The board under load: 48 bays updating at 2 Hz for 60 s, one browser page
following them by Server-Sent Events; the delay from an agent's event to the
page's update, and the station's CPU.

    .venv/bin/python bench/board_live.py [--bays 48] [--hz 2] [--seconds 60]

Loopback, plain HTTP, no root: `imager serve --no-local-agent` with a fresh data
dir (the station and the simulated agents of bench/agents_load.py: each agent
enrolled with its own key, approved, reports one drive by its evidence, and a
technician's erase gives it a job). A technician signs in (a user made in the
registry) and reads `/board/events`, as the board page does. Each agent posts
one `progress` event per tick, its `done` growing so that the card's percentage
changes every time; the page's update is the first card event for that drive
showing that percentage. The delay is measured from just before the event is
posted to the moment the page reads the update (both clocks of this process).

Printed: events sent and shown (the page may skip a value when two events of a
drive come within one update: an event counts as shown once its value or a
later one is), delay p50/p95/p99/max (target: p99 under
250 ms), the station's CPU during the load, and the peer: the same agents'
event latency (POST answered) in the same run, the floor of any update.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agents_load import MODES, SimAgent, Station, cpu_seconds, enrol, log_problems  # noqa: E402, I001

from imager.agent.client import ProofAuth  # noqa: E402
from imager.registry import accounts  # noqa: E402
from imager.settings import Settings  # noqa: E402
from imager.store.db import Registry  # noqa: E402

TARGET_P99_MS = 250.0
PASSWORD = "bench password 2026"
CARD = re.compile(r'"id": "drive-(\d+)".*?value=\\"(\d+)\\"')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def shown_after(sent: dict[tuple[int, int], float], seen: dict[tuple[int, int], float],
                drive_of_job: dict[int, int]) -> list[float]:
    """For each event, ms until the page showed its percentage or a later one (the
    page may skip a value when two events of a drive come within one update)."""
    by_drive: dict[int, list[tuple[int, float]]] = {}
    for (drive, percent), at in seen.items():
        by_drive.setdefault(drive, []).append((percent, at))
    delays = []
    for (job, percent), t0 in sent.items():
        shown = [at for p, at in by_drive.get(drive_of_job[job], []) if p >= percent]
        if shown:
            delays.append(1000 * (min(shown) - t0))
    return delays


def technician(station: Station) -> httpx.Client:
    """A signed-in technician's browser (cookies and all)."""
    registry = Registry.open(Settings(data_dir=station.data))
    try:
        with registry.session() as s:
            accounts.create_user(s, login="bench", name="Bench Technician",
                                 role="technician", password=PASSWORD, by="bench")
    finally:
        registry.close()
    browser = station.client(follow_redirects=False)
    page = browser.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, page
    done = browser.post("/login", data={"csrf": csrf.group(1), "login": "bench",
                                        "password": PASSWORD})
    assert done.status_code == 303, done.text
    return browser


async def follow(station: Station, cookies: httpx.Cookies, seen: dict[tuple[int, int], float],
                 stop: asyncio.Event) -> None:
    """Read the board's events, noting when each (drive, percent) first shows."""
    async with httpx.AsyncClient(base_url=station.url, cookies=cookies, timeout=None) as page, \
            page.stream("GET", "/board/events") as resp:
        async for line in resp.aiter_lines():
            if stop.is_set():
                return
            found = CARD.search(line)
            if found:
                seen.setdefault((int(found.group(1)), int(found.group(2))), time.monotonic())


async def load(station: Station, agents: list[SimAgent], args: argparse.Namespace,
               sent: dict[tuple[int, int], float], posts: list[float]) -> None:
    ticks = int(args.seconds * args.hz)
    start = time.monotonic() + 0.5

    async def agent_loop(index: int, agent: SimAgent) -> None:
        async with station.async_client(ProofAuth(agent.key)) as client:
            for k in range(1, ticks + 1):
                at = start + (k - 1) / args.hz + index / (args.hz * len(agents))
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                ev = agent.event("progress", {"job": agent.job, "phase": "pass", "index": 0,
                                              "done": k, "total": ticks})
                percent = round(100 * k / ticks)
                t0 = time.monotonic()
                sent.setdefault((agent.job, percent), t0)
                resp = await client.post("/api/v1/events", json={"events": [ev]})
                posts.append(time.monotonic() - t0)
                assert resp.status_code == 200, resp.text

    await asyncio.gather(*(agent_loop(i, a) for i, a in enumerate(agents)))


Seen = dict[tuple[int, int], float]


async def run(station: Station, browser: httpx.Client, agents: list[SimAgent],
              args: argparse.Namespace) -> tuple[Seen, Seen, list[float], float]:
    sent: dict[tuple[int, int], float] = {}
    seen: dict[tuple[int, int], float] = {}
    posts: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(follow(station, browser.cookies, seen, stop))
    await asyncio.sleep(1.0)
    assert station.proc is not None
    cpu0, wall0 = cpu_seconds(station.proc.pid), time.monotonic()
    await load(station, agents, args, sent, posts)
    await asyncio.sleep(1.0)                     # the last updates
    cpu = (cpu_seconds(station.proc.pid) - cpu0) / (time.monotonic() - wall0)
    stop.set()
    watcher.cancel()
    return sent, seen, posts, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bays", type=int, default=48)
    parser.add_argument("--hz", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="imager-board-") as tmp:
        station = Station(Path(tmp) / "station", MODES["http"])
        try:
            station.start()
            import json
            tokens = json.loads((station.data / "tokens.json").read_text())
            with station.client() as http:
                agents = [enrol(http, tokens, i, "board") for i in range(args.bays)]
            drive_of_job = {a.job: i + 1 for i, a in enumerate(agents)}
            browser = technician(station)
            sent, seen, posts, cpu = asyncio.run(run(station, browser, agents, args))
            browser.close()
        finally:
            station.stop()
        problems = log_problems(station.log)
    delays = shown_after(sent, seen, drive_of_job)
    print(f"board: {args.bays} bays x {args.hz:g} Hz x {args.seconds:g} s, one page following "
          "/board/events, loopback HTTP")
    print(f"  events {len(sent)}, shown on the page (their value or a later one) {len(delays)}, "
          f"never shown {len(sent) - len(delays)}")
    print(f"  delay event -> page: p50 {pct(delays, .5):.0f} ms, p95 {pct(delays, .95):.0f} ms, "
          f"p99 {pct(delays, .99):.0f} ms, max {max(delays, default=float('nan')):.0f} ms")
    print(f"  peer, the event's own POST: p50 {1000 * pct(posts, .5):.1f} ms, "
          f"p99 {1000 * pct(posts, .99):.1f} ms")
    print(f"  station CPU during the load: {100 * cpu:.0f} %")
    print(f"  station log: {len(problems)} warnings/errors")
    met = pct(delays, .99) < TARGET_P99_MS and len(delays) == len(sent)
    print(f"  target p99 < {TARGET_P99_MS:.0f} ms, every update seen: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
