"""The boot service's plain HTTP: what GRUB and iPXE fetch, and nothing else.

GRUB's and iPXE's HTTP clients speak no TLS here, so this listener is its own
small server on the bench interface's address, never the station's: it
answers only
- `/boot/grub/machine?mac=…&serial=…`, `/boot/ipxe/machine?…`: the machine's
  config for the station's decision (imager.registry.boot.decide);
- `/boot/grub/inventory?…`, `/boot/ipxe/inventory?…`: the menu's inventory
  entry (imager.registry.boot.inventory, which issues the token then);
- `/boot/files/vmlinuz|live.img|imager.img|station.img` (ranges allowed).
Anything else is 404. Inputs are hostile: a query that is not exactly one
`mac` and one `serial`, well formed, gets the config that boots the local
disk, and is logged.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from imager.boot import menus
from imager.boot.watch import BootWatch
from imager.registry.boot import BootDecision, refused

log = logging.getLogger("imager.boot")
MAX_TARGET = 512           # characters of a request's path and query
Decide = Callable[[str, str | None, str | None, str], BootDecision]
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
# Seconds a boot loader may keep a file's TCP window shut. GRUB opens the three
# initrds at `initrd` and reads them only when the kernel's EFI stub asks for them
# (LoadFile2), one after the other: imager.img and station.img wait, their windows
# shut, while live.img comes in full (120 MB: a minute or two at GRUB's pace under
# QEMU TCG). Cut after 30 s, imager.img came short and the kernel said "Failed to
# load initrd" (seen on the bench).
FILE_STALL = 300.0


@dataclass(frozen=True)
class BootContent:
    """What the HTTP side serves: where laptops reach it, how the station decides
    (kind "machine" or "inventory", mac, serial, client) and the files by name
    (a path, or bytes made at start such as station.img); the watch that follows
    each laptop's boot (imager.boot.watch), told of each answer."""

    server: menus.BootServer
    decide: Decide
    files: Mapping[str, Path | bytes]
    watch: BootWatch | None = None


def _params(query: str) -> tuple[str | None, str | None, str | None]:
    """(mac, serial, why not) from a query string: exactly one mac and one serial."""
    try:
        found = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query),
                         max_num_fields=4, errors="strict")
    except (ValueError, UnicodeDecodeError):
        return None, None, "unreadable query string"
    if set(found) != {"mac", "serial"} or any(len(v) != 1 for v in found.values()):
        return None, None, "the query must hold exactly one mac and one serial"
    return found["mac"][0], found["serial"][0], None


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1, one request per connection, ended with a reset once the client
    acknowledged the answer (BootHttpServer)."""

    protocol_version = "HTTP/1.1"        # GRUB reads only HTTP/1.1 answers
    server_version = "imager-boot"
    sys_version = ""
    timeout = 30                         # seconds a client may stall
    content: BootContent                 # set on the subclass BootHttp makes

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):   # the client went away: nothing to say
            pass

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        if len(self.path) > MAX_TARGET:
            self._bootloader_refusal(self.path[:80], "request too long", body)
            return
        parts = urlsplit(self.path)
        route = parts.path.split("/")
        if len(route) == 4 and route[:2] == ["", "boot"] and route[2] in ("grub", "ipxe") \
                and route[3] in ("machine", "inventory"):
            self._config(route[2], route[3], parts.query, body)
        elif len(route) == 4 and route[:3] == ["", "boot", "files"] and not parts.query \
                and route[3] in self.content.files:
            self._file(route[3], body)
        else:
            self._send(404, b"not found\n", "text/plain", body)

    def _config(self, loader: str, kind: str, query: str, body: bool) -> None:
        client = self.client_address[0]
        mac, serial, why = _params(query)
        if why is not None:
            decision = refused(None, None, f"{why}: {query[:120]!r}")
        else:
            try:
                decision = self.content.decide(kind, mac, serial, client)
            except Exception:               # the registry failed: the laptop boots its disk
                log.exception("boot %s request from %s failed", kind, client)
                decision = refused(mac, serial, "the station could not decide")
        level = logging.WARNING if decision.reason.startswith("request refused") else logging.INFO
        log.log(level, "boot %s/%s from %s mac=%s serial=%r: %s (%s)", loader, kind, client,
                decision.mac, decision.serial, decision.action, decision.reason)
        if self.content.watch is not None and why is None:
            self.content.watch.asked(decision, client)
        render = menus.grub_machine if loader == "grub" else menus.ipxe_machine
        self._send(200, render(self.content.server, decision).encode(), "text/plain", body)

    def _bootloader_refusal(self, shown: str, why: str, body: bool) -> None:
        log.warning("boot request from %s refused (%s): %r", self.client_address[0], why, shown)
        loader = "grub" if "/grub/" in shown else "ipxe"
        text = menus.grub_local() if loader == "grub" else menus.ipxe_local()
        self._send(200, text.encode(), "text/plain", body)

    def _file(self, name: str, body: bool) -> None:
        item = self.content.files[name]
        if self.content.watch is not None and body:
            self.content.watch.fetched(name, self.client_address[0])
        if isinstance(item, bytes):
            self._bytes(item, body)
            return
        try:
            fh = open(item, "rb")
        except OSError as exc:
            log.error("boot file %s cannot be read: %s", item, exc)
            self._send(404, b"missing\n", "text/plain", body)
            return
        with fh:
            size = os.fstat(fh.fileno()).st_size
            start, end = self._range(size)
            if start is None:
                return
            self._head(206 if (start, end) != (0, size) else 200, end - start,
                       "application/octet-stream", start, size)
            if body:
                self.wfile.flush()
                self.connection.settimeout(FILE_STALL)
                self.connection.sendfile(fh, start, end - start)

    def _bytes(self, data: bytes, body: bool) -> None:
        start, end = self._range(len(data))
        if start is None:
            return
        self._head(206 if (start, end) != (0, len(data)) else 200, end - start,
                   "application/octet-stream", start, len(data))
        if body:
            self.wfile.write(data[start:end])

    def _range(self, size: int) -> tuple[int | None, int]:
        """The byte range asked (whole file without a Range header); None after
        answering 416 to a range that cannot be served."""
        header = self.headers.get("Range")
        if not header:
            return 0, size
        match = _RANGE.fullmatch(header.strip())
        start = int(match.group(1)) if match else size
        end = min(int(match.group(2)) + 1, size) if match and match.group(2) else size
        if start >= size or end <= start:
            self._send(416, b"range not satisfiable\n", "text/plain", True)
            return None, 0
        return start, end

    def _head(self, code: int, length: int, ctype: str, start: int = 0,
              total: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        if code == 206 and total is not None:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{total}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()

    def _send(self, code: int, data: bytes, ctype: str, body: bool) -> None:
        self._head(code, len(data), ctype)
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:   # noqa: A002 (stdlib's name)
        log.debug("%s %s", self.client_address[0], format % args)


class BootHttpServer(ThreadingHTTPServer):
    """Each connection ends with a reset once the client has acknowledged every byte.

    GRUB opens its first TCP connection of every boot from the same port
    (21550) and jumps into the kernel without finishing its last closes: a
    connection closed the polite way would linger here (FIN-WAIT, LAST-ACK,
    TIME_WAIT) for a minute or two, and the same laptop booted again meanwhile
    would send a SYN this side does not answer; its GRUB then finds the
    station unreachable (seen on the bench). A reset leaves nothing behind,
    and costs nothing once the client holds all the data."""

    daemon_threads = True
    allow_reuse_address = True
    ACK_WAIT = FILE_STALL

    def shutdown_request(self, request: Any) -> None:
        deadline = time.monotonic() + self.ACK_WAIT
        try:
            while _unacked(request) and time.monotonic() < deadline:
                time.sleep(0.05)
            request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close_request(request)


def _unacked(sock: socket.socket) -> int:
    """Bytes sent on `sock` that the peer has not acknowledged yet (Linux SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


class BootHttp:
    """The listener in a thread of its own: start(), stop()."""

    def __init__(self, content: BootContent, *, address: str, port: int) -> None:
        handler = type("BoundHandler", (Handler,), {"content": content})
        self.httpd = BootHttpServer((address, port), handler, bind_and_activate=False)
        self.address, self.port = address, port
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.httpd.server_bind()
        self.httpd.server_activate()
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="boot-http",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()
