"""The welcome page's message queue, as it runs on the laptop: the real local
service and the real sender (payload/accueil_messages.py, run as subprocesses
with only the standard library: `python -I -S`), a real HTTP server in the test
playing the network's portal (up, down, slow, 500, 413, 429, 404), offline then
online, the size and queue limits, the files' permissions."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import need_tool

from imager.profile.welcome import content as welcome_content
from imager.profile.welcome.packaging import payload_files

SCRIPT = (Path(__file__).parents[1] / "imager" / "profile" / "welcome" / "payload"
          / "accueil_messages.py")
PROFILE = Path(__file__).parents[1] / "profiles" / "bureau-solidaire" / "welcome"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- the portal ---------------------------------------------------------------------------


@dataclass
class Portal:
    """A real HTTP server playing the portal: `status` answered, after `delay` s."""

    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    request_headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/messages"


@pytest.fixture
def portal() -> Iterator[Portal]:
    state = Portal()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(json.loads(body))
            state.request_headers.append(dict(self.headers))
            time.sleep(state.delay)
            self.send_response(state.status)
            for key, value in state.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# -- the local service and the sender -------------------------------------------------------


@dataclass
class Service:
    port: int
    queue: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def files(self) -> list[Path]:
        return sorted(self.queue.glob("*.json"))

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in self.files()]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!DOCTYPE html><title>accueil</title>", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("not for the web", encoding="utf-8")
    port = free_port()
    svc = Service(port, tmp_path / "state" / "messages", tmp_path / "service.log")
    with svc.log.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(SCRIPT), "serve",
                                 "--queue", str(svc.queue), "--port", str(port),
                                 "--site", str(site)], stdout=log, stderr=log)
    try:
        _wait_listening(port, proc)
        yield svc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the local message service stopped at start"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"the local message service does not listen on {port}")


def send(service: Service, portal_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One round of the real sender, as the systemd timer starts it."""
    return subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "send", "--once",
                           "--queue", str(service.queue), "--portal", portal_url,
                           "--machine", "POSTE-0042", "--timeout", "2", *extra],
                          capture_output=True, text=True, timeout=60, check=True)


@dataclass(frozen=True)
class Answer:
    status: int
    url: str
    text: str


def post_form(service: Service, fields: dict[str, str], *, origin: str | None = "null",
              host: str | None = None, raw: bytes | None = None) -> Answer:
    """The page's form posted as a browser does (Origin "null" from a file:// page)."""
    data = raw if raw is not None else urllib.parse.urlencode(fields).encode("utf-8")
    request = urllib.request.Request(f"{service.url}/messages", data=data, method="POST",
                                     headers={"Content-Type":
                                              "application/x-www-form-urlencoded"})
    if origin is not None:
        request.add_header("Origin", origin)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return Answer(answer.status, answer.url, answer.read().decode("utf-8"))
    except urllib.error.HTTPError as refused:
        return Answer(refused.code, refused.url, refused.read().decode("utf-8"))


MESSAGE = {"text": "Bonjour, le son ne marche pas.\nMerci !", "name": "Awa",
           "contact": "06 00 00 00 00", "lang": "fr"}


# -- tests -------------------------------------------------------------------------------


def test_a_message_written_offline_waits_privately_then_reaches_the_portal_once_online(
        service: Service, portal: Portal) -> None:
    answer = post_form(service, MESSAGE)
    assert answer.status == 200 and answer.url.endswith("/messages/sent?lang=fr")
    assert "Votre message est bien gardé dans l'ordinateur" in answer.text
    assert "Messages en attente d'envoi : 1." in answer.text
    [path] = service.files()
    assert stat.S_IMODE(service.queue.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(service.queue.glob(".*")), "a temporary file was left behind"

    down = f"http://127.0.0.1:{free_port()}/api/v1/messages"     # nothing listens there
    offline = send(service, down)
    [kept] = service.messages()
    assert kept["attempts"] == 1 and kept["last_error"].startswith("offline")
    assert "kept message" in offline.stderr and MESSAGE["text"] not in offline.stderr

    assert kept["next_attempt"] > time.time() + 50          # backoff: 60 s at first
    _make_due(service)                                       # ... time passes
    send(service, portal.url)
    assert service.files() == []
    [got] = portal.received
    assert got["format"] == "accueil-message/1" and got["id"] == kept["id"]
    assert {k: got[k] for k in ("text", "name", "contact", "lang")} == MESSAGE
    assert got["machine"] == "POSTE-0042" and got["attempt"] == 2
    assert datetime.fromisoformat(got["written_at"]).tzinfo is not None
    assert portal.request_headers[0]["Idempotency-Key"] == kept["id"]
    assert portal.request_headers[0]["Content-Type"].startswith("application/json")


def test_a_portal_error_keeps_the_message_with_a_growing_capped_backoff(
        service: Service, portal: Portal) -> None:
    post_form(service, MESSAGE)
    portal.status = 500
    delays = []
    for _ in range(4):
        _make_due(service)
        send(service, portal.url, "--backoff-base", "10", "--backoff-cap", "35")
        [kept] = service.messages()
        delays.append(round(kept["next_attempt"] - time.time()))
    assert delays == [10, 20, 35, 35], delays
    assert kept["last_error"] == "HTTP 500" and kept["attempts"] == 4
    before = len(portal.received)
    send(service, portal.url, "--backoff-base", "10")          # not due yet: not tried
    assert len(portal.received) == before == 4
    portal.status = 201
    _make_due(service)
    send(service, portal.url)
    assert service.files() == []


def test_a_slow_portal_counts_as_offline_and_the_round_stops_there(
        service: Service, portal: Portal) -> None:
    post_form(service, MESSAGE)
    post_form(service, {**MESSAGE, "text": "Deuxième message"})
    portal.delay = 4.0
    started = time.monotonic()
    ran = send(service, portal.url, "--timeout", "1")
    assert time.monotonic() - started < 4, "the sender waited for the slow portal"
    assert len(portal.received) == 1, "after a timeout the round must stop"
    first, second = service.messages()
    assert first["attempts"] == 1 and "timed out" in first["last_error"]
    assert second["attempts"] == 0
    assert "kept message" in ran.stderr


def test_a_permanent_refusal_drops_the_message_and_logs_it_without_its_text(
        service: Service, portal: Portal) -> None:
    post_form(service, MESSAGE)
    [message] = service.messages()
    portal.status = 413
    ran = send(service, portal.url)
    assert service.files() == []
    assert f"dropped message {message['id']}: the portal refused it for good (HTTP 413)" \
        in ran.stderr
    assert MESSAGE["text"] not in ran.stderr and MESSAGE["contact"] not in ran.stderr


@pytest.mark.parametrize(("status", "headers", "least_wait"), [
    (429, {"Retry-After": "120"}, 110),       # busy: says when to come back
    (503, {"Retry-After": "90"}, 80),
    (404, {}, 0),                             # the portal's configuration: keep trying
    (413, {"Retry-After": "60"}, 50),         # a refusal that says "retry" is kept
])
def test_answers_that_say_retry_keep_the_message(service: Service, portal: Portal,
                                                 status: int, headers: dict[str, str],
                                                 least_wait: int) -> None:
    post_form(service, MESSAGE)
    portal.status, portal.headers = status, headers
    send(service, portal.url, "--backoff-base", "1")
    [kept] = service.messages()
    assert kept["last_error"] == f"HTTP {status}"
    assert kept["next_attempt"] - time.time() >= least_wait


def test_a_message_not_sent_after_keep_days_is_dropped_unsent(
        service: Service, portal: Portal) -> None:
    post_form(service, MESSAGE)
    [path] = service.files()
    message = json.loads(path.read_text(encoding="utf-8"))
    written = datetime.now().astimezone() - timedelta(days=31)
    message["written_at"] = written.isoformat(timespec="seconds")
    path.write_text(json.dumps(message), encoding="utf-8")
    ran = send(service, portal.url, "--keep-days", "30")
    assert service.files() == [] and portal.received == []
    assert "not sent after 30.0 days" in ran.stderr


def test_the_limits_of_a_message_are_said_in_plain_french(service: Service) -> None:
    empty = post_form(service, {**MESSAGE, "text": "   "})
    assert empty.status == 400 and "Votre message est vide." in empty.text
    too_long = post_form(service, {**MESSAGE, "text": "é" * 2049})     # 4098 bytes
    assert too_long.status == 413 and "Votre message est trop long." in too_long.text
    fits = post_form(service, {**MESSAGE, "text": "é" * 2048})         # 4096 bytes
    assert fits.status == 200
    name = post_form(service, {**MESSAGE, "name": "n" * 201})
    assert name.status == 413 and "Votre nom ou votre contact est trop long." in name.text
    body = post_form(service, {}, raw=b"text=" + b"a" * 17000)
    assert body.status == 413
    english = post_form(service, {**MESSAGE, "lang": "en", "text": ""})
    assert english.status == 400 and "Your message is empty." in english.text
    assert len(service.files()) == 1


def test_a_full_queue_refuses_new_messages_and_says_what_to_do(service: Service) -> None:
    for i in range(100):
        assert post_form(service, {**MESSAGE, "text": f"message {i}"}).status == 200
    full = post_form(service, MESSAGE)
    assert full.status == 507
    assert "La boîte d'envoi de l'ordinateur est pleine." in full.text
    assert "Connectez l'ordinateur à Internet" in full.text
    assert len(service.files()) == 100


def test_a_queue_of_one_mebibyte_refuses_new_messages(service: Service) -> None:
    big = service.queue / "00000000000000000000-big.json"
    big.write_text(json.dumps({"text": "x" * (1024 * 1024)}), encoding="utf-8")
    assert post_form(service, MESSAGE).status == 507
    assert service.files() == [big]


def test_only_the_welcome_page_may_post(service: Service) -> None:
    elsewhere = post_form(service, MESSAGE, origin="https://pub.example.com")
    assert elsewhere.status == 403
    assert "seulement depuis la page d'accueil" in elsewhere.text
    rebound = post_form(service, MESSAGE, host=f"attacker.example:{service.port}")
    assert rebound.status == 403
    assert post_form(service, MESSAGE, origin=service.url).status == 200
    assert post_form(service, MESSAGE, origin=None).status == 200       # curl, a script
    assert len(service.files()) == 2


def test_the_service_listens_on_the_laptop_only_and_serves_the_page(service: Service) -> None:
    with urllib.request.urlopen(f"{service.url}/", timeout=5) as answer:
        assert "<title>accueil</title>" in answer.read().decode("utf-8")
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/.hidden", "/nothing.html"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{service.url}{path}", timeout=5)
        assert refused.value.code == 404, path
    outside = _outside_address()
    if outside:
        with pytest.raises(OSError):
            socket.create_connection((outside, service.port), timeout=1).close()


def test_the_systemd_units_of_the_package_are_valid(tmp_path: Path) -> None:
    analyze = need_tool("systemd-analyze")
    loaded = welcome_content.load(PROFILE)
    files = payload_files(loaded, slug="bureau-solidaire", build_dir=tmp_path / "build",
                          today=date(2026, 12, 6))
    units = tmp_path / "units"
    units.mkdir()
    for item in files:
        if item.path.startswith("/usr/lib/systemd/system/"):
            (units / Path(item.path).name).write_bytes(item.data())
    names = sorted(p.name for p in units.iterdir())
    assert names == ["bureau-solidaire-accueil-messages-send.service",
                     "bureau-solidaire-accueil-messages-send.timer",
                     "bureau-solidaire-accueil-messages.service"]
    ran = subprocess.run([analyze, "verify", "--man=no", *names], cwd=units,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stderr.strip() == "", ran.stderr
    service = (units / names[2]).read_text(encoding="utf-8")
    assert "--port 8377" in service and "IPAddressAllow=localhost" in service
    sender = (units / names[0]).read_text(encoding="utf-8")
    assert "--portal https://portail.example.org/api/v1/messages" in sender
    script = next(f for f in files if f.path.endswith("/accueil_messages.py"))
    assert script.mode == 0o755 and script.data() == SCRIPT.read_bytes()


def _make_due(service: Service) -> None:
    """Time passes: every queued message's next attempt is now."""
    for path in service.files():
        message = json.loads(path.read_text(encoding="utf-8"))
        message["next_attempt"] = 0
        path.write_text(json.dumps(message), encoding="utf-8")
        os.chmod(path, 0o600)


def _outside_address() -> str | None:
    """An address of this machine other than loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))            # TEST-NET: nothing is sent
            address: str = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address
