"""`imager serve` as an operator runs it: the lab bench it attached is detached
when it stops, and the API's interactive documentation is off unless asked for."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from station_proc import Serve


def _attached(image: Path) -> str:
    return subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.root
def test_serve_lab_detaches_its_loop_devices_when_it_stops(tmp_path: Path) -> None:
    station = Serve(tmp_path, "--lab", "2", "--lab-size-mib", "16", "--auto-erase", "never")
    station.start()
    try:
        bays = sorted((tmp_path / "lab").glob("bay-*.img"))
        assert len(bays) == 2 and all(_attached(b) for b in bays)
        station.kill(signal.SIGTERM)
        assert [_attached(b) for b in bays] == ["", ""]
    finally:
        station.close()


@pytest.mark.root
def test_the_api_documentation_is_served_only_when_asked_for(tmp_path: Path) -> None:
    for args, status in (((), 404), (("--api-docs",), 200)):
        station = Serve(tmp_path, "--no-local-agent", *args)
        station.start()
        try:
            for path in ("/docs", "/openapi.json", "/redoc"):
                assert httpx.get(station.url + path).status_code == status, (args, path)
        finally:
            station.close()
