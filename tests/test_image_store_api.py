"""The station serves its catalogue to agents and operators over HTTP, with
range requests (a dropped download resumes: tests/test_image_source.py), and
to nobody else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from clirun import imager
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from station_proc import Serve
from test_bmap import sample_raw

from imager.agent.client import StationClient
from imager.imaging.source import open_source


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Serve]:
    serve = Serve(tmp_path / "station", "--no-local-agent")
    imager(serve.data, "image", "create", str(sample_raw(tmp_path / "raw.img")),
           "--name", "bureau", "--version", "2026.11")
    try:
        serve.start()
        yield serve
    finally:
        serve.close()


def _agent(station: Serve) -> httpx.Client:
    """An agent's HTTP client: its own key, enrolled and approved; every request signed."""
    client = StationClient(station.url, Ed25519PrivateKey.generate())
    assert client.enrol(name="dock", kind="dock", host="h1").state == "pending"
    station.approve("dock")
    return httpx.Client(base_url=station.url, auth=client.auth)


def test_agents_list_images_and_fetch_ranges(station: Serve) -> None:
    agent = _agent(station)
    [image] = agent.get("/api/v1/images").json()
    assert (image["name"], image["version"]) == ("bureau", "2026.11")
    assert set(image["urls"]) == {"image", "bmap", "manifest"}     # no key: not signed
    whole = agent.get(image["urls"]["image"])
    assert whole.status_code == 200 and len(whole.content) == image["compressed_size"]
    part = agent.get(image["urls"]["image"], headers={"Range": "bytes=10-99"})
    assert part.status_code == 206 and part.content == whole.content[10:100]
    bmap = agent.get(image["urls"]["bmap"])
    assert b"<bmap version=\"2.0\">" in bmap.content


def test_image_store_refuses_strangers_and_unknown_files(station: Serve) -> None:
    base = f"{station.url}/api/v1/images"
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, headers={"Authorization": "Bearer nope"}).status_code == 401
    op = station.http
    assert op.get("/api/v1/images/bureau/2026.11/signed").status_code == 404
    assert op.get("/api/v1/images/bureau/2026.11/tokens").status_code == 404
    missing = op.get("/api/v1/images/bureau/1999/image")
    assert missing.status_code == 404 and "imager image list" in missing.json()["error"]
    assert op.get("/api/v1/images/..%2F..%2Ftokens.json/1/image").status_code == 404


def test_http_source_reads_the_same_bytes(station: Serve) -> None:
    agent = _agent(station)
    [image] = station.get("/api/v1/images")
    source = open_source(station.url + image["urls"]["image"], auth=agent.auth)
    with source.open() as fh:
        data = fh.read()
    local = next((station.data / "images").glob("bureau-2026.11.img.zst")).read_bytes()
    assert data == local
