"""Pure parsers of drive tools, on outputs recorded in the QEMU lab."""

from __future__ import annotations

import pytest
from conftest import DATA, read_recorded

from imager.errors import DeviceError
from imager.inventory import hdparm, nvme, scsi, smartctl
from imager.inventory.probe import medium_of
from imager.model import DriveIdentity

LAB = DATA / "lab"


def test_nvme_controller_bits_from_qemu() -> None:
    ctrl = nvme.parse_id_ctrl(read_recorded(LAB / "nvme-id-ctrl-nvme.txt"))
    assert (ctrl.model, ctrl.serial, ctrl.firmware) == ("QEMU NVMe Ctrl", "LABNVME0001",
                                                         "7.2.22")
    assert ctrl.format_supported  # OACS 266 = format + namespace mgmt + doorbell config
    assert not ctrl.sanitize_supported  # SANICAP 0: nvme sanitize is refused
    assert not ctrl.format_crypto_erase  # FNA 0: SES=2 accepted, but never claimed
    assert ctrl.namespaces == 256


def test_nvme_namespace_size() -> None:
    ns = nvme.parse_id_ns(read_recorded(LAB / "nvme-id-ns-nvme.txt"))
    assert (ns.blocks, ns.block_size, ns.size) == (131072, 512, 64 << 20)


def test_nvme_bits_are_read_one_by_one() -> None:
    ctrl = nvme.parse_id_ctrl('{"mn":"X","sn":"Y","fr":"Z","oacs":2,"sanicap":5,"fna":4}')
    assert ctrl.sanitize_crypto and not ctrl.sanitize_block and ctrl.sanitize_overwrite
    assert ctrl.format_crypto_erase and not ctrl.format_all_namespaces


def test_nvme_garbage_is_refused() -> None:
    with pytest.raises(DeviceError, match="nvme id-ctrl: not the JSON"):
        nvme.parse_id_ctrl("Invalid Command Opcode")


@pytest.mark.parametrize(("name", "protocol", "rotational", "healthy", "answered"), [
    ("smartctl-j-x-sata.txt", "ATA", None, True, True),
    ("smartctl-j-x-nvme.txt", "NVMe", None, True, True),
    ("smartctl-j-x-scsi.txt", "SCSI", None, None, True),
    ("smartctl-j-x-usb.txt", None, None, None, False),
])
def test_smartctl_reports(name: str, protocol: str | None, rotational: bool | None,
                          healthy: bool | None, answered: bool) -> None:
    rep = smartctl.parse(read_recorded(LAB / name))
    assert rep.protocol == protocol and rep.answered is answered
    assert rep.rotational is rotational
    if healthy is not None:
        assert rep.healthy is healthy
    if not answered:
        assert any("Unknown USB bridge" in p for p in rep.problems)


def test_smartctl_sata_details() -> None:
    rep = smartctl.parse(read_recorded(LAB / "smartctl-j-x-sata.txt"))
    assert (rep.model, rep.serial, rep.capacity) == ("LAB SATA SSD", "LABSATA0001", 64 << 20)
    assert rep.power_on_hours is not None
    assert "a command to the disk failed" in rep.problems  # exit status 4 under QEMU


def test_hdparm_identify_from_qemu_has_no_security_nor_sanitize() -> None:
    ident = hdparm.parse_identify(read_recorded(LAB / "hdparm-I-sata.txt"))
    assert (ident.model, ident.serial, ident.sectors) == ("LAB SATA SSD", "LABSATA0001", 131072)
    assert ident.rotational is False and ident.wwn == "5000c500a1b2c301"
    assert ident.security is None and ident.sanitize == frozenset()


def test_hpa_and_the_qemu_dco_trap() -> None:
    hpa = hdparm.parse_hpa(read_recorded(LAB / "hdparm-N-sata.txt"))
    assert (hpa.current_max, hpa.native_max, hpa.enabled) == (131072, 131072, False)
    dco = read_recorded(LAB / "hdparm-dco-identify-sata.txt")
    assert "DCO Checksum verified" in dco
    assert hdparm.parse_dco_real_max(dco, native_max=hpa.native_max) is None


# Not a recording: QEMU has no ATA Security feature set. This sample follows the
# lines hdparm 9.65 prints for it (identify.c), to exercise the frozen branch.
SECURITY_SAMPLE = """\
ATA device, with non-removable media
\tModel Number:       SAMPLE SSD
\tSerial Number:      S123
\tFirmware Revision:  1.0
\tNominal Media Rotation Rate: Solid State Device
Commands/features:
\t   *\tSANITIZE feature set
\t   *\tCRYPTO_SCRAMBLE_EXT command
\t   *\tBLOCK_ERASE_EXT command
Security:\x20
\tMaster password revision code = 65534
\t\tsupported
\tnot\tenabled
\tnot\tlocked
\t\tfrozen
\tnot\texpired: security count
\t\tsupported: enhanced erase
\t2min for SECURITY ERASE UNIT. 8min for ENHANCED SECURITY ERASE UNIT.
Checksum: correct
"""


def test_hdparm_security_and_sanitize_sections() -> None:
    ident = hdparm.parse_identify(SECURITY_SAMPLE)
    sec = ident.security
    assert sec is not None
    assert sec.supported and sec.frozen and sec.enhanced_erase
    assert not (sec.enabled or sec.locked or sec.count_expired)
    assert (sec.erase_minutes, sec.enhanced_erase_minutes) == (2, 8)
    assert ident.sanitize == {"crypto", "block"}
    thawed = hdparm.parse_identify(SECURITY_SAMPLE.replace("\t\tfrozen", "\tnot\tfrozen"))
    assert thawed.security and not thawed.security.frozen


def test_hdparm_garbage_is_refused() -> None:
    with pytest.raises(DeviceError, match="Model Number"):
        hdparm.parse_identify("SG_IO: bad/missing sense data")


def test_scsi_disk_that_refuses_the_opcode_list_claims_no_sanitize() -> None:
    assert scsi.sanitize_modes(read_recorded(LAB / "sg_opcodes-scsi.txt")) == frozenset()


# Not a recording (no emulated device supports SANITIZE): lines in the layout
# sg_opcodes prints, opcode, service action, name.
SG_OPCODES_SAMPLE = """\
  Opcode  Service    CDB    Name
  (hex)   action(h)  size
-----------------------------------------------
   00                  6    Test Unit Ready
   48       1         10    Sanitize, overwrite
   48       2         10    Sanitize, block erase
   48      1f         10    Sanitize, exit failure mode
"""


def test_scsi_sanitize_service_actions() -> None:
    assert scsi.sanitize_modes(SG_OPCODES_SAMPLE) == {"overwrite", "block"}


@pytest.mark.parametrize(("transport", "rota", "ata_rota", "medium"), [
    ("nvme", False, None, "ssd"), ("sata", True, False, "ssd"), ("sata", False, True, "hdd"),
    ("usb", True, None, "usb-flash"), ("usb", True, True, "hdd"), ("mmc", False, None, "sd-mmc"),
    (None, True, None, "hdd"), ("loop", False, None, "unknown"),
])
def test_medium_from_transport_and_rotation(transport: str | None, rota: bool,
                                            ata_rota: bool | None, medium: str) -> None:
    ident = DriveIdentity(path="/dev/x", size=1, transport=transport, rotational=rota)
    assert medium_of(ident, ata_rota) == medium


def test_nvme_list_json_from_qemu_and_table_of_a_four_namespace_controller() -> None:
    lab = nvme.parse_list(read_recorded(LAB / "nvme-list-nvme.txt"))
    assert [(e.path, e.serial, e.namespace) for e in lab] == [("/dev/nvme0n1", "LABNVME0001", 1)]
    real = nvme.parse_list(read_recorded(DATA / "real" / "nvme" /
                                         "nvme-list-msft-nvme-accelerator-4-namespaces.txt"))
    assert len(real) == 6 and real[2].namespace == 15
    assert nvme.siblings(real, "/dev/nvme0n1") == ("/dev/nvme0n2", "/dev/nvme0n3", "/dev/nvme0n4")
    assert nvme.siblings(real, "/dev/nvme1n1") == () and nvme.siblings(real, "/dev/sda") == ()


@pytest.mark.parametrize(("name", "serial"), [("sg_inq-scsi.txt", "LABSCSI0001"),
                                              ("sg_inq-usb.txt", "LABUSB0001")])
def test_scsi_inquiry(name: str, serial: str) -> None:
    inq = scsi.parse_inquiry(read_recorded(LAB / name))
    assert (inq.vendor, inq.product, inq.revision) == ("QEMU", "QEMU HARDDISK", "2.5+")
    assert inq.serial == serial and inq.device_type == "disk"
    with pytest.raises(DeviceError, match="not a standard INQUIRY"):
        scsi.parse_inquiry("sg_inq: error opening file")
