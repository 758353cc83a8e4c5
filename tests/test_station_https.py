"""HTTPS by default, over real processes on loopback addresses: `imager serve`
with its own TLS CA, `imager agent run|sync` pinned to it (exported with
`imager keys tls-ca`), a lab drive erased and certified over HTTPS by an agent
in another process and by the local agent; a station whose certificate does not
chain to the pinned CA, or is expired, or does not name the address, is
refused at once with the reason; `--listen 0.0.0.0` serves HTTPS without any
flag, and plain HTTP off loopback needs `--insecure-http`, which says why it
is unsafe."""

from __future__ import annotations

import http.server
import signal
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from certmaker import tls_server_context
from clirun import imager, spawn
from conftest import need_root
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from station_proc import Serve, until

from imager.agent.client import StationClient
from imager.agent.tls import StationTrust, station_trust
from imager.certify.identity import load_profile
from imager.certify.keys import keys_dir, pem
from imager.errors import UsageError
from imager.imaging.source import SourceError, open_source
from imager.settings import Settings
from imager.station.tls import TlsCa


def _export_ca(data: Path, out: Path) -> Path:
    done = imager(data, "keys", "tls-ca", str(out))
    assert "sha256:" in done.stdout and out.stat().st_mode & 0o777 == 0o644
    return out


def _agents(data: Path) -> int:
    with sqlite3.connect(data / "registry.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM agents").fetchone()[0])


def _until_certified(station: Serve, seconds: float) -> list[dict[str, object]]:
    def certified() -> list[dict[str, object]]:
        drives = station.get("/api/v1/drives")
        return drives if drives and all(d["state"] == "certified" for d in drives) else []
    return until(certified, seconds, "the lab drive is certified")


@pytest.fixture
def tls_station(tmp_path: Path) -> Iterator[Serve]:
    """A station forced to HTTPS on 127.0.0.2, with no local agent."""
    serve = Serve(tmp_path / "station", "--tls", "--no-local-agent", "--auto-erase", "always",
                  host="127.0.0.2", tls=True, IMAGER_CHECKPOINT_SECONDS="0.2")
    try:
        yield serve
    finally:
        serve.close()


@pytest.mark.root
def test_agent_pinned_to_the_station_ca_erases_a_lab_drive_over_https(
        tmp_path: Path, tls_station: Serve) -> None:
    need_root()
    station = tls_station
    imager(station.data, "lab", "up", "--drives", "1", "--size-gib", "0.0625")
    agent = None
    try:
        station.start()
        assert station.url.startswith("https://127.0.0.2:")
        ca = _export_ca(station.data, tmp_path / "station-ca.pem")
        agent = spawn(station.data, "agent", "run", "--station", station.url, "--ca", str(ca),
                      "--name", "laptop-https", "--only-lab", "--spool", str(tmp_path / "spool"))
        station.approve("laptop-https")
        [drive] = _until_certified(station, 180)
        [job] = station.get("/api/v1/jobs")
        assert job["state"] == "erased" and drive["identity"] == job["drive_identity"]
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=60)
        assert "not trusted" not in err and "unreachable" not in err, err
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(30)
        imager(station.data, "lab", "down", check=False)


def test_agent_pinned_to_another_ca_is_refused_and_says_so(tmp_path: Path,
                                                           tls_station: Serve) -> None:
    station = tls_station
    station.start()
    other = _export_ca(tmp_path / "other-station", tmp_path / "other-ca.pem")
    for action in ("run", "sync"):
        done = imager(tmp_path / "laptop", "agent", action, "--station", station.url,
                      "--ca", str(other), "--spool",
                      str(tmp_path / "spool"), check=False)
        assert done.returncode == 2, (action, done.stderr)
        assert "certificate not trusted" in done.stderr, done.stderr
        assert f"does not chain to the CA this agent pins ({other})" in done.stderr
        assert "imager keys tls-ca station-ca.pem" in done.stderr
    assert _agents(station.data) == 0          # the agent never enrolled

    # https without a CA: refused before anything is sent, saying where to get it
    bare = imager(tmp_path / "laptop", "agent", "run", "--station", station.url, check=False)
    assert bare.returncode == 2 and "--ca FILE" in bare.stderr
    assert "imager keys tls-ca station-ca.pem" in bare.stderr and "boot medium" in bare.stderr


def test_agent_needs_a_ca_for_https_and_refuses_plain_http_off_loopback(
        tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="imager keys tls-ca station-ca.pem"):
        station_trust("https://192.0.2.10:8470", None, insecure_http=False)
    ca = tmp_path / "ca.pem"
    assert station_trust("https://192.0.2.10:8470", ca, insecure_http=False) == StationTrust(ca)
    with pytest.raises(UsageError, match="cross it in clear"):
        station_trust("http://192.0.2.10:8470", None, insecure_http=False)
    assert station_trust("http://192.0.2.10:8470", None, insecure_http=True) is None
    for url in ("http://127.0.0.1:8470", "http://127.0.0.2:8470", "http://[::1]:8470",
                "http://localhost:8470"):
        assert station_trust(url, None, insecure_http=False) is None
    with pytest.raises(UsageError, match="--ca is for an https:// station"):
        station_trust("http://127.0.0.1:8470", ca, insecure_http=False)
    with pytest.raises(UsageError, match="not a PEM certificate|cannot read"):
        StationTrust(ca).context()


BODY = b"image bytes " * 4096


class _Files(http.server.BaseHTTPRequestHandler):
    """/api/v1/health answers ok; any other path, BODY."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b'{"status": "ok"}' if self.path == "/api/v1/health" else BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


HttpsServer = Callable[[int, int], tuple[str, Path]]


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[HttpsServer]:
    """Starts an HTTPS server on loopback whose certificate the station's own TLS CA
    issued for 127.0.0.1, valid from now + `start` to now + `end` days: (its URL,
    the CA to pin, as `imager keys tls-ca` exports it)."""
    settings = Settings(data_dir=tmp_path / "station")
    ca = TlsCa.open(keys_dir(settings), load_profile(settings))
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(start: int, end: int) -> tuple[str, Path]:
        context = tls_server_context(ca, tmp_path, days=(start, end))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}", _export_ca(
            settings.data_dir, tmp_path / "station-ca.pem")

    try:
        yield start
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_expired_station_certificate_is_refused(tmp_path: Path,
                                                https_server: HttpsServer) -> None:
    url, ca = https_server(-400, -1)           # expired yesterday
    done = imager(tmp_path / "laptop", "agent", "run", "--station", url, "--ca", str(ca),
                  check=False)
    assert done.returncode == 2, done.stderr
    assert "certificate not trusted (certificate has expired)" in done.stderr, done.stderr
    assert "out of its dates: check this machine's clock" in done.stderr


def test_images_stream_with_the_pinned_ca_only(https_server: HttpsServer) -> None:
    url, ca = https_server(-1, 30)
    client = StationClient(url, Ed25519PrivateKey.generate(), trust=StationTrust(ca))
    try:
        client.health()
        with client.source("/api/v1/images/x/image.zst").open() as stream:
            assert stream.read() == BODY
    finally:
        client.close()
    # the system's store does not know the station's CA: nothing is read
    with pytest.raises(SourceError, match="CERTIFICATE_VERIFY_FAILED"):
        open_source(f"{url}/image.zst", attempts=0).open()


@pytest.mark.root
def test_serve_on_every_address_serves_https_without_any_flag(tmp_path: Path) -> None:
    need_root()
    station = Serve(tmp_path / "station", "--lab", "1", "--lab-size-mib", "16",
                    "--auto-erase", "never", host="0.0.0.0", tls=True)
    try:
        station.start()
        # the local agent reaches it on loopback, pinned to the station's CA
        until(lambda: station.get("/api/v1/drives"), 60, "the local agent reports the drive")
        ca = _export_ca(station.data, tmp_path / "station-ca.pem")
        health = httpx.get(f"{station.url}/api/v1/health",
                           verify=ssl.create_default_context(cafile=ca))
        assert health.status_code == 200 and health.json()["status"] == "ok"
        with pytest.raises(httpx.HTTPError):     # no plain HTTP on that port
            httpx.get(f"http://127.0.0.1:{station.port}/api/v1/health", timeout=5)
        # an address the certificate does not name: refused, saying how to add it
        named = imager(tmp_path / "laptop", "agent", "run", "--station",
                       f"https://127.0.0.3:{station.port}", "--ca", str(ca),
                       check=False)
        assert named.returncode == 2
        assert "does not name 127.0.0.3" in named.stderr and "--tls-name 127.0.0.3" in \
            named.stderr
        station.kill(signal.SIGTERM)
        assert station.proc is not None
        banner = station.proc.communicate()[1]
        assert "HTTPS" in banner and "imager keys tls-ca station-ca.pem" in banner
        assert "--ca station-ca.pem" in banner
    finally:
        station.close()


@pytest.mark.root
def test_plain_http_off_loopback_only_with_insecure_http(tmp_path: Path) -> None:
    need_root()
    for action in ("run", "sync"):     # an agent refuses it before sending anything
        done = imager(tmp_path / "laptop", "agent", action, "--station",
                      "http://192.0.2.10:8470", check=False)
        assert done.returncode == 2 and "cross it in clear" in done.stderr, done.stderr
        assert "--insecure-http" in done.stderr
    flag = imager(tmp_path, "serve", "--help").stdout
    assert "--insecure-http" in flag and "cross the network in clear" in " ".join(flag.split())

    station = Serve(tmp_path / "station", "--no-local-agent", "--insecure-http",
                    host="0.0.0.0")
    try:
        station.start()
        assert httpx.get(f"http://127.0.0.1:{station.port}/api/v1/health").status_code == 200
        station.kill(signal.SIGTERM)
        assert station.proc is not None
        banner = " ".join(station.proc.communicate()[1].split())
        assert "WARNING: HTTP en clair / plain HTTP (--insecure-http)" in banner
        assert "cross the network in clear" in banner
    finally:
        station.close()


@pytest.mark.root
def test_local_agent_erases_over_https_with_an_installed_certificate(tmp_path: Path) -> None:
    """The operator's certificate names only the station's DNS name: the local
    agent reaches it on loopback and checks that name, pinned to the operator's CA."""
    need_root()
    data = tmp_path / "station"
    network = TlsCa.open(tmp_path / "network-ca", load_profile(Settings(data_dir=data)))
    key = ec.generate_private_key(ec.SECP256R1())
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_text(pem(network.issue(key, ["station.atelier.test"])) + pem(network.cert))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    imager(data, "keys", "tls-install", str(cert_file), str(key_file))
    network_ca = tmp_path / "network-ca.pem"
    network_ca.write_text(pem(network.cert))
    station = Serve(data, "--tls", "--lab", "1", "--lab-size-mib", "64", "--auto-erase",
                    "always", tls=True, ca=network_ca, tls_name="station.atelier.test",
                    IMAGER_CHECKPOINT_SECONDS="0.2")
    try:
        station.start()
        [drive] = _until_certified(station, 180)
        assert drive["present"]
        pinned = _export_ca(data, tmp_path / "exported-ca.pem")
        assert pinned.read_text() == network_ca.read_text()
        started = time.monotonic()     # the local agent's TLS connections do not hold it
        station.kill(signal.SIGTERM)
        assert time.monotonic() - started < 15
    finally:
        station.close()
