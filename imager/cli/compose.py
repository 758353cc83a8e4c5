"""`imager serve` composed: the station API, with a local agent watching the docks.

The local agent is an ordinary agent talking to the API in the same process
(bench mode): on loopback when the station listens there or everywhere, over
HTTPS pinned to the station's TLS CA when the station serves HTTPS. Stopping
(Ctrl-C, SIGTERM) stops the jobs at their next safe point and lets the agent
report that before the API closes; whatever it could not send waits in its
spool for the next start. A station killed outright (kill -9, power cut) finds
its running jobs at the next start and marks them interrupted; with
auto-resume they go on from their checkpoint.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass
from typing import Any

import uvicorn

from imager.agent.agent import Agent, AgentConfig
from imager.agent.tls import StationTrust
from imager.host import lab as lab_bench
from imager.host.net import WILDCARDS, addresses, hostname, is_loopback
from imager.protocol.proof import public_hex
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.push import PortalTarget, Pusher
from imager.station.service import Station
from imager.station.tls import ServerTls
from imager.store.db import Registry
from imager.web.server import CIPHERS

log = logging.getLogger(__name__)
STOP_GRACE = 20.0   # seconds the jobs get to stop and report before the API closes


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8470
    lab: int = 0
    lab_size: int = 256 << 20
    local_agent: bool = True
    api_docs: bool = False       # serve /docs and /openapi.json (they describe every route)
    policy: ServicePolicy = ServicePolicy()
    tls: ServerTls | None = None     # None: plain HTTP
    portal: PortalTarget | None = None   # push to the network's portal (imager.station.push)
    portal_every: float = 60.0

    @property
    def url(self) -> str:
        """The URL agents on other machines use: the first address of this machine
        that is not loopback when the station listens everywhere, the first name of
        an installed certificate that does not name the address."""
        host = self.host
        if host in WILDCARDS:
            host = next((a for a in addresses() if not is_loopback(a)), hostname())
        return self._url(self.tls and self.tls.name_for(host) or host)

    @property
    def local_host(self) -> str:
        """Where the local agent reaches the API: loopback when it listens everywhere."""
        if self.host in WILDCARDS:
            return "::1" if self.host == "::" else "127.0.0.1"
        return self.host

    @property
    def local_url(self) -> str:
        return self._url(self.local_host)

    @property
    def local_trust(self) -> StationTrust | None:
        """The local agent pins the CA file where it lies (no export needed)."""
        if self.tls is None:
            return None
        return StationTrust(self.tls.cafile, self.tls.name_for(self.local_host))

    def _url(self, host: str) -> str:
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


class _Server(uvicorn.Server):
    """uvicorn, but a stop signal first stops the local agent's jobs."""

    before_exit: threading.Event | None = None
    agent: Agent | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.before_exit is None or self.before_exit.is_set():
            super().handle_exit(sig, frame)
            return
        self.before_exit.set()
        agent = self.agent

        def drain() -> None:
            if agent is not None:
                agent.join(STOP_GRACE)
                if agent.client is not None:
                    # Its connections closed by it: over TLS the server would wait for
                    # an idle client's answer to its closing (asyncio: 30 s).
                    agent.client.close()
            self.should_exit = True

        threading.Thread(target=drain, daemon=True).start()


def serve(settings: Settings, options: ServeOptions) -> None:
    """Run the station until stopped; a lab bench it attached is detached after."""
    attached_before = {b.number for b in lab_bench.bays(settings) if b.device}
    try:
        if options.lab:
            lab_bench.up(settings, count=options.lab, size=options.lab_size)
        _serve(settings, options, lab=bool(options.lab))
    finally:        # the loop devices this run attached, even if it failed half-way
        if options.lab:
            attached = {b.number for b in lab_bench.bays(settings) if b.device}
            lab_bench.down(settings, only=attached - attached_before)


def _say_setup_link(registry: Registry, url: str) -> None:
    """While no coordinator exists: a one-time link to make the first one."""
    from imager.cli.render import console
    from imager.registry import accounts
    with registry.session() as s:
        token = accounts.new_setup_link(s) if accounts.needs_setup(s) else None
    if token:
        console(stderr=True, markup=False).print(
            f"Premier compte / first account: ouvrez / open {url}/setup?token={token} "
            f"(une fois, {accounts.SETUP_MINUTES} min / once, {accounts.SETUP_MINUTES} min) "
            "pour créer le coordinateur / to create the coordinator")


def _serve(settings: Settings, options: ServeOptions, *, lab: bool) -> None:
    registry = Registry.open(settings)
    station = Station(settings, registry, options.policy)
    station.start(reconcile=not options.local_agent)
    _say_setup_link(registry, options.url)
    tls = options.tls
    server = _Server(uvicorn.Config(
        create_app(station, docs=options.api_docs), host=options.host, port=options.port,
        log_level="warning", access_log=False,
        # Laptops' live agents keep a connection open: a stop would wait for them
        # (seen: about a minute) where the station has nothing left to say.
        timeout_graceful_shutdown=int(STOP_GRACE),
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None, ssl_ciphers=CIPHERS))
    stop = threading.Event()
    server.before_exit = stop
    pusher = options.portal and Pusher(settings, registry, options.portal,
                                       every=options.portal_every)
    # The objects made at start-up (modules, app, policy) live as long as the
    # process: keep them out of the collector's full passes, which otherwise
    # stall every request for 100-600 ms now and then (bench/agents_load.py).
    gc.collect()
    gc.freeze()
    if options.local_agent:
        server.agent = Agent(settings, AgentConfig(
            name="station-docks", spool=settings.data_dir / "spool" / "station-docks",
            station=options.local_url, only_lab=lab, trust=options.local_trust))
        station.enrol_local(public_hex(server.agent.key), name="station-docks",
                            host=server.agent.config.host)
        threading.Thread(target=_start_agent, args=(server, station, stop),
                         daemon=True).start()
    if pusher:
        station.attach_pusher(pusher)
        pusher.start()
    try:
        server.run()
    finally:
        if pusher:
            pusher.stop()
        stop.set()
        if server.agent is not None:
            server.agent.join(5)
        station.stop()
        registry.close()


def _start_agent(server: _Server, station: Station, stop: threading.Event) -> None:
    """Once the API answers: the local agent, its spool sent, then the reconcile."""
    while not server.started and not server.should_exit:
        stop.wait(0.05)
    if not server.started or server.agent is None:
        return
    server.agent.start(stop)
    server.agent.flushed.wait(STOP_GRACE)
    station.reconcile()
