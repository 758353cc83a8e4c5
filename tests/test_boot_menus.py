"""The network boot service without a network: the station's decisions over a real
registry, the GRUB and iPXE texts, the dnsmasq configuration, the newc writer
(unpacked by the real cpio), and the HTTP side on loopback."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import pytest
from bootnet import deploy, tie
from conftest import need_tool
from sqlalchemy import select

from imager.boot import dnsmasq, menus
from imager.boot.cpio import Entry, newc
from imager.boot.http import BootContent, BootHttp
from imager.boot.service import CA_PATH, station_img
from imager.registry import boot
from imager.registry.boot import BootDecision
from imager.store.db import Registry, utcnow
from imager.store.models import BootToken, ItemEvent, Machine

MAC = "52:54:00:12:34:56"
SERVER = menus.BootServer("10.66.0.2", 8471, "https://10.66.0.2:8470")
CA = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def decide(registry: Registry, mac: str | None = MAC, serial: str | None = "PF1ABCDE",
           kind: str = "machine") -> BootDecision:
    with registry.session() as s:
        fn = boot.inventory if kind == "inventory" else boot.decide
        return fn(s, mac=mac, serial=serial, client="10.66.0.185")


# -- the station's decision ------------------------------------------------------

def test_a_machine_tied_to_a_donation_boots_live_with_a_token_bound_to_it(
        registry: Registry) -> None:
    machine = tie(registry, "PF1ABCDE")
    got = decide(registry, mac="52-54-00-12-34-56")
    assert (got.action, got.machine_id, got.mac) == ("live", machine, MAC)
    assert got.token and re.fullmatch(r"[A-Za-z0-9_-]{32}", got.token)
    with registry.session() as s:
        row = s.scalar(select(BootToken).where(BootToken.token_sha256 == _sha(got.token)))
        assert row is not None
        assert (row.mac, row.serial, row.created_by, row.used_at) == (
            MAC, "PF1ABCDE", "boot service", None)
        event = s.scalars(select(ItemEvent).where(ItemEvent.machine_id == machine,
                                                  ItemEvent.kind == "boot")).one()
        assert event.data is not None
        assert event.data["action"] == "live" and event.data["client"] == "10.66.0.185"
        assert event.data["mac"] == MAC and event.data["token"] is True
        assert got.token not in str(event.data) + event.reason
    assert decide(registry).token != got.token          # each boot, a fresh token


@pytest.mark.parametrize("serial", ["", "To Be Filled By O.E.M.", "Default string",
                                    "0123456789", "00000000", "System Serial Number"])
def test_no_usable_serial_gets_the_menu_and_no_token(registry: Registry, serial: str) -> None:
    tie(registry, "0123456789")            # even when the registry holds that "serial"
    got = decide(registry, serial=serial)
    assert (got.action, got.token) == ("menu", None)


def test_unknown_and_unattached_machines_get_the_menu(registry: Registry) -> None:
    assert decide(registry, serial="UNKNOWN1").action == "menu"
    with registry.session() as s:
        s.add(Machine(serial="LOOSE001", state="inventoried", created_at=utcnow()))
    got = decide(registry, serial="LOOSE001")
    assert got.action == "menu" and "no donation" in got.reason
    with registry.session() as s:
        assert s.scalar(select(BootToken)) is None


def test_a_deployed_machine_boots_its_disk_at_once(registry: Registry) -> None:
    machine = tie(registry, "PF1DEPLOY")
    assert decide(registry, serial="PF1DEPLOY").action == "live"
    deploy(registry, machine)
    got = decide(registry, serial="PF1DEPLOY")
    assert (got.action, got.token) == ("local", None)
    assert decide(registry, serial="PF1DEPLOY", kind="inventory").action == "local"


def test_a_machine_past_imaging_boots_its_disk(registry: Registry) -> None:
    machine = tie(registry, "PF1READY")
    with registry.session() as s:
        s.get_one(Machine, machine).state = "ready"
    assert decide(registry, serial="PF1READY").action == "local"


@pytest.mark.parametrize(("mac", "serial"), [
    ("52:54:00:12:34", "PF1"), ("zz:54:00:12:34:56", "PF1"), (None, "PF1"),
    (MAC, "PF1\nset root=x"), (MAC, "A" * 65), (MAC, "PF1;reboot"), (MAC, "PF1$x"),
    (MAC, "é"), (MAC, None)])
def test_malformed_requests_get_the_local_disk(registry: Registry, mac: str | None,
                                               serial: str | None) -> None:
    tie(registry, "PF1")
    got = decide(registry, mac=mac, serial=serial)
    assert got.action == "local" and got.reason.startswith("request refused")
    assert all(" " <= c <= "~" for c in got.serial)
    with registry.session() as s:
        assert s.scalar(select(BootToken)) is None


def test_a_flood_of_boot_requests_gets_no_more_tokens(registry: Registry) -> None:
    tie(registry, "PF1FLOOD")
    got = [decide(registry, serial="PF1FLOOD") for _ in range(boot.MAX_OPEN_TOKENS + 2)]
    assert [d.action for d in got] == ["live"] * boot.MAX_OPEN_TOKENS + ["local"] * 2
    assert decide(registry, serial="PF1FLOOD", kind="inventory").action == "local"
    with registry.session() as s:
        assert len(list(s.scalars(select(BootToken)))) == boot.MAX_OPEN_TOKENS


def test_the_menus_inventory_entry_issues_its_token_when_chosen(registry: Registry) -> None:
    assert decide(registry, serial="UNKNOWN2").token is None
    got = decide(registry, serial="UNKNOWN2", kind="inventory")
    assert got.action == "live" and got.token is not None
    empty = decide(registry, serial="", kind="inventory")
    assert (empty.action, empty.token) == ("live", None)   # pairing code instead
    with registry.session() as s:
        assert [r.serial for r in s.scalars(select(BootToken))] == ["UNKNOWN2"]


# -- what GRUB and iPXE are told ------------------------------------------------

def _live(token: str | None = "t" * 32) -> BootDecision:
    return BootDecision("live", "test", MAC, "PF1ABCDE", 1, token)


def test_the_live_command_line() -> None:
    assert menus.live_cmdline(SERVER, _live()) == (
        f"imager.station=https://10.66.0.2:8470 imager.token={'t' * 32} imager.mac={MAC} "
        "imager.boot=network console=tty0 console=ttyS0,115200")
    assert "imager.token" not in menus.live_cmdline(SERVER, _live(None))
    with pytest.raises(ValueError):
        menus.live_cmdline(SERVER, _live("bad token; reboot"))


def test_grub_live_loads_the_kernel_and_three_initrds_over_http() -> None:
    text = menus.grub_machine(SERVER, _live())
    dev = "(http,10.66.0.2:8471)"
    assert f"linux {dev}/boot/files/vmlinuz imager.station=" in text
    assert (f"initrd {dev}/boot/files/live.img {dev}/boot/files/imager.img "
            f"{dev}/boot/files/station.img") in text
    ipxe = menus.ipxe_machine(SERVER, _live())
    assert ipxe.startswith("#!ipxe\n")
    assert [ln.split()[3] for ln in ipxe.splitlines() if ln.startswith("initrd ")] == [
        "http://10.66.0.2:8471/boot/files/live.img", "http://10.66.0.2:8471/boot/files/imager.img",
        "http://10.66.0.2:8471/boot/files/station.img"]


def test_the_menu_boots_the_disk_after_ten_seconds_and_offers_an_inventory() -> None:
    menu = BootDecision("menu", "unknown", MAC, "To Be Filled By O.E.M.")
    grub = menus.grub_machine(SERVER, menu)
    assert "set timeout=10" in grub and "set default=local" in grub
    local = grub.split('--id local {')[1].split("}")[0]
    assert "chainloader $loader" in local and "/EFI/BOOT/BOOTX64.EFI" in local
    assert ("/boot/grub/inventory?mac=52:54:00:12:34:56&serial=To%20Be%20Filled%20By%20O.E.M."
            in grub)
    ipxe = menus.ipxe_machine(SERVER, menu)
    assert "choose --default local --timeout 10000 target" in ipxe
    assert "item inventory Inventorier cet ordinateur (rien n'est efface)" in ipxe
    assert "sanboot --no-describe --drive 0x80" in ipxe.split(":local")[1]
    for text in (grub, ipxe):
        assert text.isascii()


def test_local_and_entry_scripts() -> None:
    assert "chainloader" in menus.grub_machine(SERVER, boot.refused("x", "y", "bad"))
    entry = menus.grub_entry(SERVER)
    assert "smbios --type 1 --get-string 7 --set serial" in entry
    assert ('configfile "(http,10.66.0.2:8471)/boot/grub/machine?mac=${net_default_mac}'
            '&serial=${serial}"') in entry
    ipxe = menus.ipxe_entry(SERVER)
    assert ("chain http://10.66.0.2:8471/boot/ipxe/machine?mac=${netX/mac}"
            "&serial=${smbios/serial:uristring}") in ipxe


def test_a_hostile_reason_stays_a_comment() -> None:
    evil = BootDecision("local", "x\nreboot", MAC, "y")
    assert "\nreboot" not in menus.grub_machine(SERVER, evil)
    assert "\nreboot" not in menus.ipxe_machine(SERVER, evil)


# -- dnsmasq -------------------------------------------------------------------

def _cfg(**kw: object) -> dnsmasq.ProxyConfig:
    base: dict[str, object] = {"interface": "bench0",
                               "network": ipaddress.IPv4Network("10.66.0.0/24"),
                               "tftp_root": Path("/run/imager-boot/bench0/tftp")}
    return dnsmasq.ProxyConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_dnsmasq_is_a_proxy_on_the_bench_interface_only() -> None:
    lines = dnsmasq.config(_cfg()).splitlines()
    assert "dhcp-range=10.66.0.0,proxy,255.255.255.0" in lines
    assert [ln for ln in lines if ln.startswith("dhcp-range")] == [
        "dhcp-range=10.66.0.0,proxy,255.255.255.0"]
    for line in ("port=0", "interface=bench0", "bind-interfaces", "except-interface=lo",
                 "enable-tftp", "tftp-root=/run/imager-boot/bench0/tftp",
                 "dhcp-match=set:ipxe,175"):
        assert line in lines
    services = [ln for ln in lines if ln.startswith("pxe-service=")]
    assert 'pxe-service=tag:!ipxe,x86PC,"Station imager (BIOS)",undionly' in services
    assert 'pxe-service=tag:ipxe,x86PC,"Station imager (iPXE)",boot.ipxe' in services
    for arch in ("x86-64_EFI", "BC_EFI"):
        assert f'pxe-service=tag:uefi-shim,{arch},"Station imager (UEFI)",shimx64.efi' in services
    assert not any("dhcp-mac" in ln for ln in lines)


def test_dnsmasq_ipxe_for_listed_nics_and_a_dhcp_server_only_when_asked() -> None:
    text = dnsmasq.config(_cfg(ipxe_macs=(MAC,)))
    assert f"dhcp-mac=set:snp,{MAC}" in text
    assert 'pxe-service=tag:uefi-snp,x86-64_EFI,"Station imager (UEFI iPXE)",snponly.efi' in text
    danger = dnsmasq.config(_cfg(dangerous_dhcp_range=(
        ipaddress.IPv4Address("10.66.0.100"), ipaddress.IPv4Address("10.66.0.150"))))
    assert "dhcp-range=10.66.0.100,10.66.0.150,255.255.255.0,1h" in danger
    assert "proxy" not in danger.split("dhcp-range=")[1].splitlines()[0]
    for bad in ({"interface": "lo"}, {"interface": "eth0 bad"}, {"ipxe_macs": ("nope",)},
                {"dangerous_dhcp_range": (ipaddress.IPv4Address("10.1.0.1"),
                                          ipaddress.IPv4Address("10.1.0.9"))}):
        with pytest.raises(ValueError):
            _cfg(**bad)


# -- station.img -----------------------------------------------------------------

def test_station_img_unpacks_with_the_real_cpio(tmp_path: Path) -> None:
    need_tool("cpio")
    (tmp_path / "x").mkdir()
    for archive in (station_img(CA), newc([Entry.file("init", b"#!/bin/sh\n", 0o755)])):
        subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=tmp_path / "x",
                       check=True)
    assert (tmp_path / "x" / CA_PATH).read_bytes() == CA
    assert (tmp_path / "x" / "init").stat().st_mode & 0o777 == 0o755
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=station_img(CA),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == ["etc", "etc/imager", CA_PATH]
    assert station_img(CA) == station_img(CA)
    with pytest.raises(ValueError):
        Entry.file("../etc/passwd", b"")


# -- the HTTP side on loopback --------------------------------------------------------

@pytest.fixture
def http(registry: Registry, tmp_path: Path) -> Iterator[str]:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(bytes(range(256)) * 4096)

    def decided(kind: str, mac: str | None, serial: str | None, client: str) -> BootDecision:
        return decide(registry, mac=mac, serial=serial, kind=kind)

    content = BootContent(SERVER, decided, {"vmlinuz": kernel, "station.img": station_img(CA)})
    server = BootHttp(content, address="127.0.0.1", port=0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.httpd.server_address[1]}"
    finally:
        server.stop()


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read()
    except HTTPError as exc:
        return exc.code, exc.read()


def test_http_serves_configs_files_and_ranges(http: str, registry: Registry) -> None:
    tie(registry, "PF1HTTP")
    code, body = _get(f"{http}/boot/grub/machine?mac={MAC}&serial=PF1HTTP")
    assert code == 200 and b"imager.token=" in body
    code, body = _get(f"{http}/boot/ipxe/machine?mac={MAC}&serial=To%20Be%20Filled%20By%20O.E.M.")
    assert code == 200 and body.startswith(b"#!ipxe") and b"choose" in body
    code, kernel = _get(f"{http}/boot/files/vmlinuz")
    assert code == 200 and len(kernel) == 256 * 4096
    code, part = _get(f"{http}/boot/files/vmlinuz", {"Range": "bytes=256-511"})
    assert (code, part) == (206, bytes(range(256)))
    assert _get(f"{http}/boot/files/station.img")[1] == station_img(CA)


@pytest.mark.parametrize("query", [
    "mac=52:54:00:12:34&serial=PF1", "serial=PF1", "mac=52:54:00:12:34:56",
    "mac=52:54:00:12:34:56&serial=PF1&serial=PF2", "mac=52:54:00:12:34:56&serial=PF1%0Areboot",
    "mac=52:54:00:12:34:56&serial=%FF", "mac=52:54:00:12:34:56&serial=" + "A" * 600,
    "mac=52:54:00:12:34:56&serial=PF1&extra=1"])
def test_http_answers_a_bad_query_with_the_local_disk(http: str, query: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    code, body = _get(f"{http}/boot/grub/machine?{query}")
    assert code == 200 and b"chainloader $loader" in body and b"linux " not in body
    code, body = _get(f"{http}/boot/ipxe/inventory?{query}")
    assert code == 200 and b"sanboot --no-describe --drive 0x80" in body
    assert b"kernel " not in body
    assert "refused" in caplog.text


@pytest.mark.parametrize("path", ["/", "/api/agents", "/boot/files/../../etc/passwd",
                                  "/boot/files/registry.sqlite3", "/boot/grub/grub.cfg",
                                  "/boot/files/vmlinuz?x=1", "/docs"])
def test_http_serves_nothing_else(http: str, path: str) -> None:
    assert _get(f"{http}{path}")[0] == 404


def test_http_decides_concurrently(http: str, registry: Registry) -> None:
    tie(registry, "PF1MANY")
    codes: list[int] = []

    def ask() -> None:
        codes.append(_get(f"{http}/boot/grub/machine?mac={MAC}&serial=PF1MANY")[0])

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 8
    with registry.session() as s:
        assert len(list(s.scalars(select(BootToken)))) == 8


# -- the command line ------------------------------------------------------------

CLI = ("import sys; from imager.cli import COMMANDS, Command, main; "
       "COMMANDS.setdefault('boot', Command('boot_serve', 'boot')); sys.exit(main())")


def _imager(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import os
    import sys
    env = {**os.environ, "IMAGER_DATA_DIR": str(data)}
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_boot_nic_lists_the_cards_that_get_ipxe(tmp_path: Path) -> None:
    from imager.boot.nics import ipxe_macs
    from imager.settings import Settings
    data = tmp_path / "data"
    assert "aucune" in _imager(data, "boot", "nic").stdout
    assert _imager(data, "boot", "nic", "52-54-00-AA-BB-CC", "--ipxe").returncode == 0
    assert _imager(data, "boot", "nic", MAC).returncode == 0
    assert ipxe_macs(Settings(data_dir=data)) == (MAC, "52:54:00:aa:bb:cc")
    assert _imager(data, "boot", "nic", MAC, "--no-ipxe").stdout.splitlines()[0] == (
        "52:54:00:aa:bb:cc")
    bad = _imager(data, "boot", "nic", "nope")
    assert bad.returncode == 2 and "52:54:00:12:34:56" in bad.stderr


def test_boot_serve_names_what_is_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = _imager(data, "boot", "serve", "--interface", "lo", "--files", str(tmp_path / "no"))
    assert files.returncode == 2 and "imager boot build" in files.stderr
    assert str(tmp_path / "no" / "vmlinuz") in files.stderr
    danger = _imager(data, "boot", "serve", "--interface", "x", "--dangerous-dhcp-server", "1")
    assert danger.returncode == 2 and "FIRST-LAST" in danger.stderr


def test_the_station_url_is_https() -> None:
    for bad in ("http://10.66.0.2:8470", "https://x y", "https://10.66.0.2:8470/a b",
                "javascript:x"):
        with pytest.raises(ValueError):
            menus.BootServer("10.66.0.2", 8471, bad)
    with pytest.raises(ValueError):
        menus.BootServer("station.lan", 8471, "https://10.66.0.2:8470")
