"""A boot report on the serial console, for images tested in a VM (the `lab` profile).

Once multi-user.target is reached, one line goes to the kernel log (so to the
serial console, console=ttyS0) and to the journal:

    IMAGER-BOOT-REPORT profile=lab version=2026.12.1 locale=fr_FR.UTF-8 locale_ok=yes
    keyboard=fr hostname=lab-poste firmware=uefi secureboot=on target=multi-user

(one line; keys and values have no spaces). A test reads it with `parse_report`.
A spec takes it with `BuildSpec(files=FILES, enable_units=UNITS)`."""

from __future__ import annotations

import re

from imager.profile.buildspec import ImageFile

MARK = "IMAGER-BOOT-REPORT"
SCRIPT_PATH = "/usr/local/sbin/imager-boot-report"
UNIT = "imager-boot-report.service"

SCRIPT = r"""#!/bin/sh
# The image's boot report on the serial console (imager.profile.boot_report).
. /etc/imager-profile
LANG_SET=$(sed -n 's/^LANG=//p' /etc/default/locale)
want=$(printf '%s' "$LANG_SET" | tr 'A-Z' 'a-z' | sed 's/utf-8$/utf8/')
if locale -a | tr 'A-Z' 'a-z' | grep -qx "$want"; then locale_ok=yes; else locale_ok=no; fi
layout=$(sed -n 's/^XKBLAYOUT="\(.*\)"/\1/p' /etc/default/keyboard)
if [ -d /sys/firmware/efi ]; then
    firmware=uefi
    sb=off
    var=$(ls /sys/firmware/efi/efivars/SecureBoot-* 2>/dev/null | head -n 1)
    if [ -n "$var" ] && [ "$(od -An -tu1 -j4 -N1 "$var" | tr -d ' ')" = 1 ]; then sb=on; fi
else
    firmware=bios
    sb=none
fi
if systemctl is-active --quiet multi-user.target; then target=multi-user; else target=none; fi
line="IMAGER-BOOT-REPORT profile=$NAME version=$VERSION locale=$LANG_SET"
line="$line locale_ok=$locale_ok keyboard=$layout hostname=$(hostname) firmware=$firmware"
line="$line secureboot=$sb target=$target"
echo "$line"
# Through the kernel log: printed on the serial console whatever the getty does
# with ttyS0 (its vhangup would cut a direct write).
echo "<4>$line" > /dev/kmsg
"""

SERVICE = f"""[Unit]
Description=imager boot report on the serial console
After=multi-user.target

[Service]
Type=oneshot
ExecStart={SCRIPT_PATH}
StandardOutput=journal

[Install]
WantedBy=multi-user.target
"""

FILES = (ImageFile(SCRIPT_PATH, SCRIPT.encode(), 0o755),
         ImageFile(f"/etc/systemd/system/{UNIT}", SERVICE.encode()))
UNITS = (UNIT,)
_LINE = re.compile(rf"{MARK}((?: \S+=\S*)* target=\S+)")


def parse_report(console: str) -> dict[str, str] | None:
    """The last boot report in a console log, as a dict; None when there is none."""
    found = _LINE.findall(console)
    if not found:
        return None
    return dict(pair.split("=", 1) for pair in found[-1].split())
