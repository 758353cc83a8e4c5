"""The live system laptops boot: built once (cached by content), Debian's signed
kernel, within its size budget, and booted in QEMU (TCG) as a laptop would be.

- Its cable out, then plugged in, its station unreachable: the laptop says
  there is no cable, then gets an address from the network's DHCP by itself,
  says on its serial console that the station does not answer, and its own
  screen says each in French, with what to do.
- Against a real station (`imager serve` over HTTPS on the host, reached at
  slirp's 10.0.2.2) and a boot token issued for the VM's MAC and SMBIOS serial:
  the agent enrols at once, the station lists it active with the laptop's
  inventory; a laptop tied to no donation is then told it is done and restarts.
One VM boot per case, shared by its assertions."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from clirun import imager
from conftest import need, need_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from live_vm import MAC, SERIAL, LiveVM
from PIL import Image
from station_proc import Serve, free_port, until

from imager.boot import guest, live, stages
from imager.boot.live import LiveSystem

pytestmark = pytest.mark.root
BOOT_SECONDS = 600          # TCG on a busy 2-core machine: generous


@pytest.fixture(scope="module")
def system() -> LiveSystem:
    """The live system of this code, built or from the cache (IMAGER_LIVE_CACHE)."""
    need(os.geteuid() == 0, "building the live system needs root (mmdebstrap, chroot)")
    missing = guest.missing_tools()
    need(not missing, f"the live build needs: apt-get install {' '.join(missing)}")
    return live.build()


@pytest.fixture(scope="module")
def qemu() -> None:
    need_tool("qemu-system-x86_64")


def _sbverify(path: Path) -> str:
    need_tool("sbverify")
    return subprocess.run(["sbverify", "--list", str(path)], capture_output=True, text=True,
                          check=True).stdout


def test_the_kernel_and_the_boot_chain_are_signed(system: LiveSystem) -> None:
    assert "Debian Secure Boot Signer" in _sbverify(system.kernel)
    assert "Microsoft Corporation UEFI CA" in _sbverify(system.file("shimx64.efi"))
    assert "Debian Secure Boot Signer" in _sbverify(system.file("grubx64.efi"))
    for name in ("undionly.kpxe", "snponly.efi"):
        assert system.file(name).stat().st_size > 50_000
    fetched = {p["name"]: p for p in system.manifest["fetched_packages"]}
    assert {"shim-signed", "grub-efi-amd64-signed", "ipxe"} <= set(fetched)
    assert fetched[f"linux-image-{system.manifest['kernel_version']}"]["sha256"]


def test_the_live_system_is_within_its_size_budget(system: LiveSystem) -> None:
    budget = system.manifest["budget"]
    assert system.boot_bytes == budget["boot_bytes"] <= live.BUDGET_BYTES
    assert budget["within"]
    print(f"\nlive system: vmlinuz + live.img + imager.img = {system.boot_bytes / 1e6:.1f} MB"
          f" (budget {live.BUDGET_BYTES / 1e6:.0f} MB)")


def test_the_manifest_says_what_is_inside(system: LiveSystem) -> None:
    m = system.manifest
    assert m["suite"] == live.SUITE and m["python"] == "3.13"
    assert {"hdparm", "nvme-cli", "sg3-utils", "smartmontools", "mmc-utils", "dmidecode",
            "busybox", "kbd", "iproute2"} <= set(m["debian_packages"])
    assert any(name.startswith("rtl_nic/") for name in m["firmware"])
    assert any(w.lower().startswith("pydantic_core-") for w in m["python_wheels"])
    assert m["recipe_key"] == live.os_key()
    assert m["code_key"] == live.code_key(os=m["os_key"])
    # keyed on today's versions too: the kernel, shim and GRUB resolved are those inside
    resolved = set(m["resolved"])
    fetched = {p["name"]: p["version"] for p in m["fetched_packages"]}
    for name in (f"linux-image-{m['kernel_version']}", "shim-signed", "grub-efi-amd64-signed"):
        assert f"{name}={fetched[name]}:amd64" in resolved, name
    assert any(line.startswith("pydantic-core==") for line in resolved)


# -- the station unreachable --------------------------------------------------------------


def _some_ca() -> bytes:
    """A CA certificate the unreachable station would have had."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Atelier test CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def unreachable(system: LiveSystem, qemu: None,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVM]:
    """The laptop booted with its network cable out, plugged in once it said so,
    toward a station port nothing listens on (slirp refuses the connection)."""
    work = tmp_path_factory.mktemp("live-unreachable")
    station = f"https://10.0.2.2:{free_port()}"
    with LiveVM(work, system, station=station, ca=_some_ca()) as vm:
        vm.cable(False)
        vm.wait_for(stages.NETWORK_FAILED, BOOT_SECONDS, reason=stages.NO_CARRIER)
        time.sleep(2)
        _keep(vm.screendump(work / "live-ecran-cable.png"))
        vm.cable(True)
        vm.wait_for(stages.FAILED, 300, reason=stages.STATION_UNREACHABLE)
        yield vm


def test_without_its_station_the_serial_console_says_each_stage(unreachable: LiveVM) -> None:
    said = [stage for stage, _ in unreachable.lines()]
    assert said[:4] == [stages.START, stages.NETWORK_FAILED, stages.NETWORK,
                        stages.AGENT_STARTED], said
    assert said[-1] == stages.FAILED
    assert unreachable.wait_for(stages.NETWORK_FAILED, 1)["iface"]
    network = unreachable.wait_for(stages.NETWORK, 1)
    assert network["ip"] == "10.0.2.15/24" and network["router"] == "10.0.2.2"
    assert network["mac"] == MAC and network["iface"]
    print(f"\nunreachable: {unreachable.seen}")


def test_without_its_station_the_screen_says_it_in_french(unreachable: LiveVM) -> None:
    time.sleep(2)                            # the session draws right after its line
    png = unreachable.screendump(unreachable.workdir / "live-ecran-erreur.png")
    with Image.open(png) as shot:
        image = shot.convert("RGB")
    assert image.size == (1024, 768)         # vga=0x318: the framebuffer console
    title_bar = [image.getpixel((x, 80)) for x in range(0, 1024, 16)]
    assert sum(1 for r, g, b in title_bar if r > 150 and g < 60 and b < 60) > 40, title_bar
    text_rows = [image.getpixel((x, y)) for y in range(130, 230, 4) for x in range(0, 900, 4)]
    assert any(min(pixel) > 200 for pixel in text_rows)      # white letters
    _keep(png)


def _keep(png: Path) -> None:
    """Copy a screendump into $IMAGER_SCREENSHOTS (docs/ takes the ones looked at)."""
    keep = os.environ.get("IMAGER_SCREENSHOTS")
    if keep:
        shutil.copyfile(png, Path(keep) / png.name)


# -- a real station ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """`imager serve` over HTTPS on the host's loopback, its certificate naming
    10.0.2.2 (the host as slirp's guests reach it)."""
    data = tmp_path_factory.mktemp("live-station") / "station"
    serve = Serve(data, "--no-local-agent", "--tls", "--tls-name", "10.0.2.2", tls=True)
    try:
        serve.start()
        yield serve
    finally:
        serve.close()


@pytest.fixture(scope="module")
def enrolled(system: LiveSystem, qemu: None, station: Serve,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVM]:
    """The laptop booted with a boot token for its MAC and serial, until enrolled."""
    token = imager(station.data, "agents", "boot-token", "--mac", MAC, "--serial", SERIAL,
                   "--by", "Lina (tests)").stdout.strip()
    work = tmp_path_factory.mktemp("live-enrolled")
    with LiveVM(work, system, station=f"https://10.0.2.2:{station.port}",
                ca=station.ca.read_bytes(), token=token) as vm:
        vm.wait_for(stages.ENROLLED, BOOT_SECONDS)
        _keep(vm.screendump(work / "live-ecran-accepte.png"))
        yield vm


def test_with_a_boot_token_the_laptop_enrols_at_once(enrolled: LiveVM,
                                                     station: Serve) -> None:
    fields = enrolled.wait_for(stages.ENROLLED, 1)
    said = [stage for stage, _ in enrolled.lines()]
    assert stages.PENDING not in said and stages.FAILED not in said, said
    agents: list[dict[str, Any]] = station.get("/api/v1/agents")
    (agent,) = [a for a in agents if str(a["id"]) == fields["agent"]]
    assert agent["state"] == "active" and agent["kind"] == "machine"
    assert agent["name"] == f"portable {SERIAL}"
    print(f"\nenrolled: {enrolled.seen}")


def test_the_station_has_the_laptops_inventory(enrolled: LiveVM, station: Serve) -> None:
    def inventoried() -> list[dict[str, Any]]:
        return [m for m in station.get("/api/v1/machines") if SERIAL in str(m)]
    (machine,) = until(inventoried, 120, f"the station lists the laptop {SERIAL}")
    assert machine["state"] == "inventoried", machine


def test_a_laptop_tied_to_no_donation_is_done_and_restarts(enrolled: LiveVM) -> None:
    enrolled.wait_for(stages.DONE, 300)
    png = enrolled.screendump(enrolled.workdir / "live-ecran-termine.png")
    _keep(png)
    assert enrolled.exited(120) is not None, "the live system did not restart the laptop"
    print(f"\nenrolled, then done: {enrolled.seen}")


# -- no boot token: a technician pairs the laptop with the code on its screen ----------------

PAIRED_MAC, PAIRED_SERIAL = "52:54:00:4c:49:57", "LIVE-TEST-0002"


@pytest.fixture(scope="module")
def pending(system: LiveSystem, qemu: None, station: Serve,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveVM]:
    """A laptop booted with no boot token, until it shows its pairing code."""
    work = tmp_path_factory.mktemp("live-pending")
    with LiveVM(work, system, station=f"https://10.0.2.2:{station.port}",
                ca=station.ca.read_bytes(), mac=PAIRED_MAC, serial=PAIRED_SERIAL) as vm:
        vm.wait_for(stages.PENDING, BOOT_SECONDS)
        yield vm


def test_without_a_token_the_screen_shows_the_code_a_technician_pairs(
        pending: LiveVM, station: Serve) -> None:
    fields = pending.wait_for(stages.PENDING, 1)
    code = fields["code"]
    assert len(code) == 9 and code[4] == "-", fields
    time.sleep(2)
    _keep(pending.screendump(pending.workdir / "live-ecran-code.png"))
    imager(station.data, "agents", "pair", code, "--by", "Lina (tests)")
    assert pending.wait_for(stages.ENROLLED, 120)["agent"] == fields["agent"]
    print(f"\npending, then paired: {pending.seen}")
