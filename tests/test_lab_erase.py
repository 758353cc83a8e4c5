"""The station's own `imager erase` in the QEMU lab guest: each emulated drive
gets the plan its capabilities call for, is erased by it for real (nvme-cli
formats the NVMe namespace) and every report states the class achieved.

The NVMe controller is made to lie by a wrapper that answers `nvme format`
with nvme-cli's success message without sending the command: the canaries
must catch it. Under CI=true nothing here may skip (see conftest.vm).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from lab.vm import LabVM

pytestmark = pytest.mark.root

IMAGER = "python3 -m imager --data-dir /tmp/imager-{name}"
ENV = {"PYTHONPATH": "/project", "PYTHONDONTWRITEBYTECODE": "1"}
DONOR = "Facture Société Alpine d'Électricité n° 2026-117"

EXPECTED = {  # drive -> (medium, methods in order, class reached)
    "nvme": ("nvme", ["nvme-format-user-data", "nist-clear"], "purge"),
    "sata": ("sata-ssd", ["nist-clear"], "clear"),
    "scsi": ("sas-hdd", ["nist-clear"], "clear"),
    "usb": ("usb-flash", ["nist-clear"], "clear"),
    "sd": ("sd-card", ["nist-clear"], "clear"),
}

LIAR = r"""mkdir -p /tmp/liar && cat > /tmp/liar/nvme <<'EOF'
#!/bin/sh
# A controller whose firmware lies: format "succeeds" and erases nothing.
if [ "$1" = format ]; then echo "Success formatting namespace:1"; exit 0; fi
exec /usr/sbin/nvme "$@"
EOF
chmod +x /tmp/liar/nvme"""


def imager(vm: LabVM, args: str, *, name: str = "lab", timeout: float = 600,
           path_prefix: str = "") -> Any:
    env = dict(ENV, PATH=f"{path_prefix}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                         "/sbin:/bin")
    return vm.run(f"{IMAGER.format(name=name)} {args}", env=env, timeout=timeout)


def seed_donor_data(vm: LabVM, path: str) -> None:
    """Donor data at the start, the middle and the end of the drive."""
    text = shlex.quote(DONOR * 100)
    vm.run(f"size=$(blockdev --getsize64 {path}); for off in 0 $((size/2)) $((size-8192)); do "
           f"printf %s {text} | dd of={path} bs=1 seek=$off conv=notrunc,fsync status=none; "
           "done").check()


def holds_donor_data(vm: LabVM, path: str) -> bool:
    out = vm.run(f"grep -c -a {shlex.quote(DONOR)} {path} || true").check().stdout
    return int(out.strip() or 0) > 0


def reports(stdout: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    return {r["device"]["path"]: r for r in lines if r.get("event") == "report"}


def test_every_lab_drive_gets_the_plan_its_capabilities_call_for(
        vm: LabVM, dev: dict[str, str]) -> None:
    out = imager(vm, f"erase --plan --json {' '.join(dev.values())}").check()
    plans = {p["device"]: p["plan"] for p in json.loads(out.stdout)}
    for name, (medium, methods, _) in EXPECTED.items():
        plan = plans[dev[name]]
        assert plan["medium"] == medium, name
        assert [s["method"] for s in plan["steps"]] == methods, name
        assert plan["policy"].startswith("reseau-solidaire-hautes-alpes v1")
    skipped = {s["method"]: s["reason"] for s in plans[dev["nvme"]]["skipped"]}
    assert "SANICAP bit 1 clear" in skipped["nvme-sanitize-block"]
    assert "FNA bit 2 clear" in skipped["nvme-format-crypto"]  # QEMU takes SES=2: not claimed
    nvme_step = plans[dev["nvme"]]["steps"][0]
    assert nvme_step["options"]["ses"] == 1 and nvme_step["sanitization_class"] == "purge"
    assert plans[dev["sata"]]["hidden"] == {"visible_max": 131072, "native_max": 131072,
                                            "dco_real_max": None}
    assert "destroy" in plans[dev["usb"]]["advice"][0]["en"]
    text = imager(vm, f"erase --plan {dev['nvme']}").check().stdout
    assert "1. nvme-format-user-data" in text and "Purge" in text
    assert "écartée / skipped: nvme-sanitize-crypto" in text


def test_every_lab_drive_is_erased_by_its_plan_and_reports_its_class(
        vm: LabVM, dev: dict[str, str]) -> None:
    for path in dev.values():
        seed_donor_data(vm, path)
        assert holds_donor_data(vm, path)
    out = imager(vm, f"erase --json {' '.join(dev.values())}", name="all", timeout=900)
    got = reports(out.stdout)
    assert out.rc == 0, out.stderr[-2000:]
    for name, (_, methods, achieved) in EXPECTED.items():
        report = got[dev[name]]
        assert report["outcome"] == "erased", (name, report["reason"])
        assert report["plan"]["steps"][0]["method"] == methods[0], name
        assert report["achieved_class"] == achieved, name
        assert report["verification"]["ok"] and report["verification"]["coverage"] == 1.0
        assert not holds_donor_data(vm, dev[name]), name
    nvme = got[dev["nvme"]]
    assert nvme["passes"][0]["pattern"] == "nvme format --ses=1"
    assert nvme["canary"]["survivors"] == [] and nvme["canary"]["planted"] >= 1000
    assert nvme["verification"]["pattern"] == "read-after-erase 0x00"


def test_a_lying_nvme_firmware_fails_the_job_on_its_canaries(
        vm: LabVM, dev: dict[str, str]) -> None:
    vm.run(LIAR).check()
    seed_donor_data(vm, dev["nvme"])
    out = imager(vm, f"erase --json {dev['nvme']}", name="liar", path_prefix="/tmp/liar:")
    report = reports(out.stdout)[dev["nvme"]]
    assert out.rc == 1
    assert report["outcome"] == "failed" and report["achieved_class"] is None
    assert "canary markers survived" in report["reason"]
    assert len(report["canary"]["survivors"]) == report["canary"]["planted"]
    assert holds_donor_data(vm, dev["nvme"])  # nothing was erased, and it says so
