"""Image sources: a local file, and HTTP resumed with Range after a dropped
connection, against real servers on loopback (a threaded http.server that
misbehaves on demand, and Starlette's FileResponse under uvicorn, the way the
station serves its catalogue, behind a proxy that cuts the first connection)."""

from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route
from test_bmap import BS
from test_image_deploy import FILL, Image, assert_deployed, edge_writes, loaded

from imager.imaging.deploy import deploy
from imager.imaging.source import SourceError, open_source
from imager.settings import Settings

MiB = 1 << 20


class Served:
    """A file served over HTTP/1.1 with Range support; misbehaves on demand.

    `drops`: for the next requests in turn, close the connection after that
    many body bytes. `etags`: the ETag of each request in turn (the last one
    repeats). `ranges`: honour Range requests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.drops: list[int] = []
        self.etags = ['"v1"']
        self.ranges = True
        self.status = 200
        self.requests: list[str | None] = []       # the Range header of each request
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                served.answer(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/image.zst"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        data = self.path.read_bytes()
        asked = h.headers.get("Range")
        self.requests.append(asked)
        if self.status != 200:
            h.send_error(self.status)
            return
        etag = self.etags[min(len(self.requests), len(self.etags)) - 1]
        start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1]) if asked and self.ranges else 0
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("ETag", etag)
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        body = data[start:]
        if self.drops:
            h.wfile.write(body[:self.drops.pop(0)])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        h.wfile.write(body)

    def __enter__(self) -> Served:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def image(tmp_path: Path) -> Image:
    """edge_writes() with 3 MiB of noise: a compressed file big enough to cut."""
    noise = random.Random(6).randbytes(768 * BS)
    return Image(tmp_path, 1024 * BS, [*edge_writes(), (64 * BS, noise)])


def read_all(url: str, **kw: object) -> bytes:
    with open_source(url, **kw).open() as stream:  # type: ignore[arg-type]
        return stream.read()


# --- local files --------------------------------------------------------------------

def test_local_file_source(image: Image, tmp_path: Path) -> None:
    with open_source(image.file).open() as stream:
        assert stream.read() == image.file.read_bytes()
    with pytest.raises(SourceError, match="cannot read the image .*missing.zst"):
        open_source(tmp_path / "missing.zst").open()


# --- HTTP -----------------------------------------------------------------------------

def test_dropped_connections_resumed_with_range(image: Image) -> None:
    data = image.file.read_bytes()
    with Served(image.file) as served:
        served.drops = [100_000, 50_000]
        assert read_all(served.url, backoff=0.01) == data
    assert served.requests == [None, "bytes=100000-", "bytes=150000-"]


@pytest.mark.root
def test_http_deploy_resumed_identical_and_verified(
        image: Image, loopdev: Callable[..., str], settings: Settings) -> None:
    dev = loaded(loopdev, 4 * MiB)
    digest = hashlib.sha256(image.file.read_bytes()).hexdigest()
    with Served(image.file) as served:
        served.drops = [len(image.file.read_bytes()) // 3]
        result = deploy(open_source(served.url, backoff=0.01), image.bmap, [dev],
                        settings=settings, expected_sha256=digest)
    assert result.ok, result
    assert len(served.requests) == 2 and served.requests[1].startswith("bytes=")
    assert result.source_sha256 == digest
    assert result.targets[0].verified_bytes == image.bmap.mapped_bytes
    assert_deployed(image, dev)


def test_image_changed_during_download_refused(image: Image) -> None:
    with Served(image.file) as served:
        served.drops, served.etags = [10_000], ['"v1"', '"v2"']
        with pytest.raises(SourceError, match=r"changed during the download \(ETag"):
            read_all(served.url, backoff=0.01)


def test_server_without_range_support_refused(image: Image) -> None:
    with Served(image.file) as served:
        served.drops, served.ranges = [10_000], False
        with pytest.raises(SourceError, match="cannot resume .* HTTP 200"):
            read_all(served.url, backoff=0.01)


def test_gives_up_after_a_few_attempts(image: Image, tmp_path: Path,
                                       settings: Settings) -> None:
    with Served(image.file) as served:
        served.drops = [10_000] + [0] * 10
        with pytest.raises(SourceError, match="3 attempts to resume failed"):
            read_all(served.url, backoff=0.01, attempts=3)
        assert len(served.requests) == 4               # the first, then 3 resumes
        served.drops = [1_500_000] + [0] * 10           # a deployment, once writing
        target = tmp_path / "target.img"
        target.write_bytes(bytes([FILL]) * 4 * MiB)
        result = deploy(open_source(served.url, backoff=0.01, attempts=2), image.bmap,
                        [str(target)], settings=settings, allow_files=True)
    assert not result.ok and "attempts to resume failed" in result.targets[0].error


def test_http_errors_named(image: Image) -> None:
    with Served(image.file) as served:
        served.status = 404
        with pytest.raises(SourceError, match="no image at .*404"):
            read_all(served.url)
        served.status = 403
        with pytest.raises(SourceError, match="refused .*403"):
            read_all(served.url)
    with pytest.raises(SourceError, match="cannot fetch .* 3 times"):   # nobody listens
        read_all(served.url, backoff=0.01, attempts=2)


# --- the station's way: Starlette FileResponse under uvicorn ---------------------------

class CuttingProxy:
    """A TCP proxy on loopback that cuts its first connection after `cut` bytes
    sent to the client (headers included); later connections pass whole."""

    def __init__(self, upstream: int, cut: int) -> None:
        self.upstream, self.cut = upstream, cut
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = self.cut if self.connections == 1 else None
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, limit), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[:limit - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def starlette_server(image: Image) -> Iterator[int]:
    """uvicorn serving image.file with FileResponse; yields its port."""
    app = Starlette(routes=[Route("/image.zst", lambda request: FileResponse(image.file))])
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_starlette_file_response_resumed(image: Image, starlette_server: int) -> None:
    proxy = CuttingProxy(starlette_server, cut=200_000)
    try:
        got = read_all(f"http://127.0.0.1:{proxy.port}/image.zst", backoff=0.01)
    finally:
        proxy.close()
    assert got == image.file.read_bytes()
    assert proxy.connections == 2
