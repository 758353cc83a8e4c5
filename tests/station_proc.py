"""A real `imager serve` process for tests over HTTP or HTTPS on loopback."""

from __future__ import annotations

import json
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from clirun import imager, spawn

ROOT = Path(__file__).resolve().parent.parent


def slow_policy(folder: Path) -> Path:
    """The shipped erase policy with three passes (dod-3pass) on virtual drives: a lab
    erasure then lasts long enough to cut it off in the middle."""
    policy = folder / "slow-policy.yaml"
    policy.write_text((ROOT / "profiles" / "erase-policy.yaml").read_text().replace(
        "  virtual:\n    - nist-clear", "  virtual:\n    - dod-3pass"))
    assert "dod-3pass" in policy.read_text()
    return policy


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Serve:
    """One `imager serve ARGS...` process listening on `host` (reached on
    127.0.0.1 when it is 0.0.0.0); restartable on the same data dir. `tls`: it
    serves HTTPS (give `--tls` in ARGS on loopback), checked against `ca` (the
    station's TLS CA by default) and `tls_name` (default: the URL's host)."""

    def __init__(self, data: Path, *args: str, host: str = "127.0.0.1", tls: bool = False,
                 ca: Path | None = None, tls_name: str | None = None, **env: str) -> None:
        self.data, self.host, self.port = data, host, free_port(host)
        self.tls, self.tls_name = tls, tls_name
        self.ca = ca or data / "keys" / "tls-ca.crt"
        reach = "127.0.0.1" if host == "0.0.0.0" else host
        self.url = f"{'https' if tls else 'http'}://{reach}:{self.port}"
        self.extensions = {"sni_hostname": tls_name} if tls_name else {}
        self.args, self.env = args, env
        self.proc: subprocess.Popen[str] | None = None
        self._console: Console | None = None

    def start(self) -> None:
        self.proc = spawn(self.data, "serve", *self.args, "--listen",
                          f"{self.host}:{self.port}", **self.env)
        self._console = None
        until(lambda: self._health(), 60, "the station answers")
        token = json.loads((self.data / "tokens.json").read_text())["operator"]
        self.http = httpx.Client(base_url=self.url, timeout=30, verify=self.verify(),
                                 headers={"Authorization": f"Bearer {token}"})

    def console(self, pattern: str, seconds: float = 30) -> re.Match[str]:
        """The first line the station printed on its console (stderr) that matches
        `pattern`, waiting for it. From the first call on, the console is read
        until the process ends."""
        assert self.proc is not None and self.proc.stderr is not None
        if self._console is None:
            self._console = Console(self.proc.stderr)
        console = self._console
        found: re.Match[str] = until(lambda: console.search(pattern), seconds,
                                     f"the station prints {pattern!r} on its console "
                                     f"(it printed: {console.lines})")
        return found

    def verify(self) -> ssl.SSLContext | bool:
        """The station's CA only (stdlib, not the code under test), for HTTPS."""
        return ssl.create_default_context(cafile=self.ca) if self.tls else True

    def _health(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"imager serve exited: {self.proc.communicate()}")
        if self.tls and not self.ca.exists():
            return False
        try:
            with httpx.Client(timeout=1, verify=self.verify()) as client:
                return client.get(f"{self.url}/api/v1/health",
                                  extensions=self.extensions).status_code == 200
        except httpx.HTTPError:
            return False

    def get(self, path: str) -> Any:
        resp = self.http.get(path, extensions=self.extensions)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        resp = self.http.post(path, json=body, extensions=self.extensions)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def close(self) -> None:
        """Stop the station if it runs (SIGTERM) and take its lab bench down."""
        if self.proc and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
        if "--lab" in self.args:
            imager(self.data, "lab", "down", check=False)

    def approve(self, name: str) -> int:
        """Approve the pending agent called `name`, as a technician would (the agent
        waits for it); its number."""
        def pending() -> int | None:
            listed = json.loads(imager(self.data, "agents", "list", "--pending",
                                       "--json").stdout)
            return next((a["id"] for a in listed if a["name"] == name), None)
        agent_id: int = until(pending, 60, f"agent {name} asks to be enrolled")
        imager(self.data, "agents", "approve", str(agent_id), "--by", "Lina (tests)")
        return agent_id

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        # Closed first: over TLS, the station's closing of an idle connection would
        # wait for the answer of a client that no longer reads (asyncio: 30 s).
        self.http.close()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)


def plugged_in(serve: Serve, count: int, seconds: float = 60) -> list[dict[str, Any]]:
    """The station's drives plugged in now, once there are `count` of them."""
    def present() -> list[dict[str, Any]] | None:
        drives = [d for d in serve.get("/api/v1/drives") if d["present"]]
        return drives if len(drives) == count else None
    found: list[dict[str, Any]] = until(present, seconds,
                                        f"the station sees {count} drives plugged in")
    return found


class Console:
    """The lines a process writes to a pipe, read by a thread as they come."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def search(self, pattern: str) -> re.Match[str] | None:
        with self._lock:
            return next((m for m in map(re.compile(pattern).search, self.lines) if m), None)


def until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


def bare_station(tmp_path: Path) -> Iterator[Serve]:
    """A fixture's body: `imager serve --no-local-agent` on loopback in the test's
    folder, started by the test itself, closed after (use it as
    `station = pytest.fixture(name="station")(bare_station)`)."""
    serve = Serve(tmp_path / "station", "--no-local-agent")
    try:
        yield serve
    finally:
        serve.close()
