"""The live system's PID 1 (a shell script, /init) and its DHCP client's script.

The init mounts the kernel's filesystems, gives the machine its own machine-id,
coldplugs the devices with udev (drivers and firmware load), sets the French
keymap and a large console font on the laptop's screen (tty1), then runs the
live session (`python3 -m imager.boot.session`: network, agent, screen). It
never ends: if the session stops, it says so on the serial console and on the
screen, and waits. Ctrl+Alt+Del restarts the laptop.

The serial lines come from `imager.boot.stages`; `init_script()` fills them in."""

from __future__ import annotations

from imager.boot import stages
from imager.boot.cmdline import CA_PATH

FONT = "/usr/share/consolefonts/Lat15-TerminusBold32x16.psf.gz"
# VGA text mode (a BIOS boot with no vga= mode): 8-pixel-wide fonts only.
TEXT_FONT = "/usr/share/consolefonts/Lat15-TerminusBold16.psf.gz"
KEYMAP = "/etc/imager/keymap-fr.kmap"
UDHCPC_SCRIPT = "/usr/lib/imager/udhcpc.script"
RUN = "/run/imager"                  # the session's files: spool, status, leases, logs
IMAGER_ROOT = "/opt/imager"          # imager.img: the package and its shipped profiles
DATA_DIR = f"{RUN}/data"

_INIT = """\
#!/bin/sh
# PID 1 of the imager live system (imager/boot/initscript.py).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root
export PYTHONPATH={imager_root} PYTHONDONTWRITEBYTECODE=1 IMAGER_DATA_DIR={data_dir}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=0755 tmpfs /run
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
exec </dev/console >/dev/console 2>&1
echo 1 > /proc/sys/kernel/printk
echo "{prefix} stage={start} kernel=$(uname -r)"
tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id
mkdir -p /etc/nvme
cat /proc/sys/kernel/random/uuid > /etc/nvme/hostid
echo "nqn.2014-08.org.nvmexpress:uuid:$(cat /etc/nvme/hostid)" > /etc/nvme/hostnqn
hostname imager-live
mkdir -p {run}
mkdir -m 0700 {data_dir}
if [ -d /sys/firmware/efi ]; then
    modprobe efivarfs 2>/dev/null
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
fi
/usr/lib/systemd/systemd-udevd --daemon --resolve-names=never
udevadm trigger --type=subsystems --action=add
udevadm trigger --type=devices --action=add
udevadm settle --timeout=60
loadkeys -q {keymap} < /dev/tty1 > /dev/null 2>&1 || echo "imager-live: no French keymap"
setfont -C /dev/tty1 {font} > /dev/null 2>&1 || \
    setfont -C /dev/tty1 {text_font} > /dev/null 2>&1 || echo "imager-live: no console font"
printf '\\033[9;0]\\033[14;0]' > /dev/tty1
[ -f {ca} ] || echo "imager-live: no station CA at {ca} (the boot service's initrd)"
trap 'echo b > /proc/sysrq-trigger' INT
python3 -m imager.boot.session &
wait $!
status=$?
echo "{prefix} stage={failed} reason={session_exited} status=$status"
printf '\\033[2J\\033[H\\n  %s\\n\\n  %s\\n  %s\\n' \\
    "Le programme de l'atelier s'est arrêté." "Redémarrez l'ordinateur." \\
    "Si cela recommence, appelez le responsable de l'atelier." > /dev/tty1
while :; do sleep 3600 & wait $!; done
"""

# busybox udhcpc's script: configure the interface, then write the lease where the
# session waits for it (RUN/net/<interface>.lease, key=value lines).
_UDHCPC = """\
#!/bin/sh
# DHCP client script of the imager live system (imager/boot/initscript.py).
dir={run}/net
mkdir -p "$dir"
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set dev "$interface" up
        rm -f "$dir/$interface.lease"
        ;;
    bound|renew)
        old=$(sed -n 's/^ip=//p' "$dir/$interface.lease" 2>/dev/null)
        [ -n "$old" ] && [ "$old" != "$ip" ] && ip -4 addr flush dev "$interface"
        ip -4 addr replace "$ip/${{mask:-$subnet}}" dev "$interface"
        gateway=""
        for gateway in $router; do break; done
        [ -n "$gateway" ] && ip route replace default via "$gateway" dev "$interface"
        : > /etc/resolv.conf
        for server in $dns; do echo "nameserver $server" >> /etc/resolv.conf; done
        printf 'ip=%s\\nmask=%s\\nrouter=%s\\ndns=%s\\nserver=%s\\n' "$ip" "${{mask:-$subnet}}" \\
            "$gateway" "$dns" "$serverid" > "$dir/$interface.tmp"
        mv "$dir/$interface.tmp" "$dir/$interface.lease"
        ;;
esac
exit 0
"""


def init_script() -> str:
    """/init of the live system."""
    return _INIT.format(
        prefix=stages.PREFIX, start=stages.START, failed=stages.FAILED,
        session_exited=stages.SESSION_EXITED, imager_root=IMAGER_ROOT, data_dir=DATA_DIR,
        run=RUN, keymap=KEYMAP, font=FONT, text_font=TEXT_FONT, ca=CA_PATH)


def udhcpc_script() -> str:
    """UDHCPC_SCRIPT of the live system."""
    return _UDHCPC.format(run=RUN)
