"""What the boot service says to GRUB and iPXE, as text (pure functions).

The chain, UEFI: firmware PXE -> shim -> GRUB (Debian's signed network GRUB) reads
`(tftp)/grub/grub.cfg` (`grub_entry`), which asks the station over HTTP for this
machine's config (`grub_machine`): live, menu or local. BIOS: PXE ROM -> iPXE
(`undionly`, or the NIC's own iPXE) runs `boot.ipxe` from TFTP (`ipxe_entry`),
which chains this machine's script over HTTP (`ipxe_machine`). The kernel and
initrds come over HTTP: TFTP sends one block per round trip. Measured on the
bench (QEMU TCG, 8 MiB kernel): iPXE 0.5-1 s over HTTP against 2 s over TFTP;
GRUB 2.12 4.2 s over HTTP against 2.5 s over TFTP (its TCP takes 536-byte
segments and an 8 KiB window, and under emulation the cost per packet rules);
on a real network the round trip rules and HTTP wins (to check on a laptop).

Texts shown on the laptop are French and ASCII only: iPXE's and GRUB's
consoles (firmware fonts, serial lines) show no accented letter reliably.
Every value put in a script is checked or encoded here, so a hostile MAC or
serial can never become a command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from imager.registry.boot import BootDecision, clean_mac

MENU_SECONDS = 10
FAILED_SECONDS = 10
INITRDS = ("live.img", "imager.img", "station.img")
_URL = re.compile(r"https://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
ENTRY_LOCAL = "Demarrer le disque de cet ordinateur (par defaut, dans 10 secondes)"
ENTRY_INVENTORY = "Inventorier cet ordinateur (rien n'est efface)"
TITLE = "Station imager : cet ordinateur n'est pas attendu"
LOADING = "Station imager : chargement du systeme d'inventaire, patientez..."
FAILED = ("Station imager : le systeme n'a pas pu etre charge. Demarrage du disque de "
          "cet ordinateur dans 10 secondes.")
LOCAL = "Station imager : demarrage du disque de cet ordinateur..."
NO_LOCAL = ("Station imager : aucun systeme trouve sur les disques de cet ordinateur. "
            "Retour au micrologiciel dans 10 secondes.")
# The UEFI loaders GRUB looks for on the disks to boot them, in this order.
UEFI_LOADERS = ("/EFI/BOOT/BOOTX64.EFI", "/EFI/Microsoft/Boot/bootmgfw.efi",
                "/EFI/debian/shimx64.efi")
UNREACHABLE = ("Station imager injoignable : demarrage du disque de cet ordinateur "
               "dans 10 secondes.")


@dataclass(frozen=True)
class BootServer:
    """Where laptops reach the boot service (plain HTTP on the bench interface's
    address) and the station their agent enrols with (HTTPS)."""

    host: str                # an IPv4 address: GRUB's and iPXE's HTTP need no DNS
    port: int
    station_url: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9]{1,3}(\.[0-9]{1,3}){3}", self.host):
            raise ValueError(f"boot server host {self.host!r}: give an IPv4 address")
        if not 0 < self.port < 65536:
            raise ValueError(f"boot server port {self.port}: give 1 to 65535")
        if not _URL.fullmatch(self.station_url):
            raise ValueError(f"station URL {self.station_url!r}: give https://HOST:PORT")

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def grub_device(self) -> str:
        return f"(http,{self.host}:{self.port})"


def query(mac: str, serial: str) -> str:
    return f"mac={quote(mac, safe=':')}&serial={quote(serial, safe='')}"


def live_cmdline(server: BootServer, decision: BootDecision) -> str:
    """The live system's kernel command line: the station, the boot token bound to
    this MAC and serial (none: the agent asks a technician to pair it), the MAC."""
    mac = clean_mac(decision.mac)
    if mac is None:
        raise ValueError(f"live boot for a malformed MAC {decision.mac!r}")
    words = [f"imager.station={server.station_url}"]
    if decision.token is not None:
        if not _TOKEN.fullmatch(decision.token):
            raise ValueError("a boot token is URL-safe base64")
        words.append(f"imager.token={decision.token}")
    words += [f"imager.mac={mac}", "imager.boot=network", "console=tty0",
              "console=ttyS0,115200"]
    return " ".join(words)


# -- GRUB (UEFI) -------------------------------------------------------------------

def grub_entry(server: BootServer) -> str:
    """`(tftp)/grub/grub.cfg`: read the SMBIOS serial and the MAC, and load this
    machine's config from the station. GRUB's HTTP client sends the path as it
    is: a serial with any other character than [A-Za-z0-9._-] is sent empty
    (the station then shows the menu). Without an answer: the local disk."""
    return f"""\
# imager boot service: asks the station what this machine boots
set timeout=0
smbios --type 1 --get-string 7 --set serial
if ! regexp '^[A-Za-z0-9._-]{{1,64}}$' "$serial"; then
  set serial=
fi
configfile "{server.grub_device}/boot/grub/machine?mac=${{net_default_mac}}&serial=${{serial}}"
echo "{UNREACHABLE}"
sleep {FAILED_SECONDS}
""" + grub_local()


def grub_machine(server: BootServer, decision: BootDecision) -> str:
    """This machine's GRUB config for the station's decision."""
    head = f"# imager: {decision.action} ({_comment(decision.reason)})\n"
    if decision.action == "live":
        return head + grub_live(server, decision)
    if decision.action == "menu":
        return head + grub_menu(server, decision)
    return head + grub_local()


def grub_live(server: BootServer, decision: BootDecision) -> str:
    dev = server.grub_device
    initrds = " ".join(f"{dev}/boot/files/{name}" for name in INITRDS)
    return f"""\
echo "{LOADING}"
if linux {dev}/boot/files/vmlinuz {live_cmdline(server, decision)}; then
  if initrd {initrds}; then
    boot
  fi
fi
echo "{FAILED}"
sleep {FAILED_SECONDS}
""" + grub_local()


def grub_menu(server: BootServer, decision: BootDecision) -> str:
    """The menu of a machine the station does not tie to a donation: the local
    disk after 10 s, or an inventory that asks the station for a token then."""
    url = f"{server.grub_device}/boot/grub/inventory?{query(decision.mac, decision.serial)}"
    return f"""\
set timeout={MENU_SECONDS}
set timeout_style=menu
set default=local
echo "{TITLE}"
menuentry "{ENTRY_LOCAL}" --id local {{
{_indent(grub_local())}}}
menuentry "{ENTRY_INVENTORY}" --id inventory {{
  configfile "{url}"
}}
"""


def grub_local() -> str:
    """Boot the local disk: GRUB starts the disk's own UEFI loader (the removable
    path an installed profile and Windows both have, else Windows' or Debian's);
    under Secure Boot the firmware checks it as it would at a disk boot. GRUB's
    `exit` does not do it: OVMF then shows its boot manager, not the next boot
    option. Without any loader on a disk: back to the firmware."""
    loops = " ".join(UEFI_LOADERS)
    return f"""\
echo "{LOCAL}"
for loader in {loops}; do
  if search --no-floppy --file --set=root $loader; then
    chainloader $loader
    boot
  fi
done
echo "{NO_LOCAL}"
sleep {FAILED_SECONDS}
exit 1
"""


# -- iPXE (BIOS, and UEFI NICs listed for snponly) --------------------------------

def ipxe_entry(server: BootServer) -> str:
    """`boot.ipxe` (TFTP): chain this machine's script from the station, with its
    MAC and its SMBIOS serial URI-encoded. Without an answer: the local disk."""
    asked = "mac=${netX/mac}&serial=${smbios/serial:uristring}"
    return f"""\
#!ipxe
chain {server.http}/boot/ipxe/machine?{asked} || goto unreachable
:unreachable
echo {UNREACHABLE}
sleep {FAILED_SECONDS}
{_ipxe_local_lines()}"""


def ipxe_machine(server: BootServer, decision: BootDecision) -> str:
    head = f"#!ipxe\n# imager: {decision.action} ({_comment(decision.reason)})\n"
    if decision.action == "live":
        return head + ipxe_live(server, decision)
    if decision.action == "menu":
        return head + ipxe_menu(server, decision)
    return head + _ipxe_local_lines()


def ipxe_live(server: BootServer, decision: BootDecision) -> str:
    """The kernel and its three initrds over HTTP (the `initrd=` words let the
    kernel's EFI stub find them under iPXE's UEFI build; BIOS ignores them)."""
    files = f"{server.http}/boot/files"
    names = " ".join(f"initrd={name}" for name in INITRDS)
    fetch = "".join(f"initrd --name {name} {files}/{name} || goto failed\n"
                    for name in INITRDS)
    return f"""\
echo {LOADING}
kernel {files}/vmlinuz {names} {live_cmdline(server, decision)} || goto failed
{fetch}boot || goto failed
:failed
echo {FAILED}
sleep {FAILED_SECONDS}
{_ipxe_local_lines()}"""


def ipxe_menu(server: BootServer, decision: BootDecision) -> str:
    url = f"{server.http}/boot/ipxe/inventory?{query(decision.mac, decision.serial)}"
    return f"""\
menu {TITLE}
item local {ENTRY_LOCAL}
item inventory {ENTRY_INVENTORY}
choose --default local --timeout {MENU_SECONDS * 1000} target || goto local
goto ${{target}}
:inventory
chain {url} || goto local
:local
{_ipxe_local_lines()}"""


def ipxe_local() -> str:
    return "#!ipxe\n" + _ipxe_local_lines()


def _ipxe_local_lines() -> str:
    """UEFI: back to the firmware's next boot option. BIOS: the first hard disk
    (a BIOS that PXE-booted may not go on to the disk when iPXE exits)."""
    return ("iseq ${platform} efi && exit 1 ||\n"
            "sanboot --no-describe --drive 0x80 || exit 1\n")


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


def _comment(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:200]
