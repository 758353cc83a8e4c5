"""The erase policy and the plan it gives each drive (pure: no device touched).

Capabilities come from outputs recorded in the QEMU lab; the cases the lab
cannot show (sanitize, security, HPA) are the lab's values with one field
changed, said so where it is done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import DATA, read_recorded

from imager.erase import catalogue
from imager.erase.plan import medium_key, plan_for
from imager.erase.policy import SHIPPED, load, parse
from imager.errors import UsageError
from imager.inventory import hdparm, mmc, nvme, scsi, smartctl
from imager.inventory.capabilities import DriveCapabilities, Medium
from imager.inventory.hdparm import AtaSecurity, HostProtectedArea
from imager.inventory.probe import medium_of
from imager.model import DriveIdentity, ErasePlan

LAB = DATA / "lab"
POLICY = load()


def _ident(path: str, transport: str | None, rotational: bool = False) -> DriveIdentity:
    return DriveIdentity(path=path, size=64 << 20, model="LAB", serial="S1",
                         transport=transport, rotational=rotational)


def lab_nvme() -> DriveCapabilities:
    return DriveCapabilities(
        identity=_ident("/dev/nvme0n1", "nvme"), medium="ssd", transport="nvme",
        nvme=nvme.parse_id_ctrl(read_recorded(LAB / "nvme-id-ctrl-nvme.txt")),
        nvme_namespace=nvme.parse_id_ns(read_recorded(LAB / "nvme-id-ns-nvme.txt")))


def lab_sata() -> DriveCapabilities:
    return DriveCapabilities(
        identity=_ident("/dev/sdb", "sata"), medium="ssd", transport="sata",
        ata=hdparm.parse_identify(read_recorded(LAB / "hdparm-I-sata.txt")),
        hpa=hdparm.parse_hpa(read_recorded(LAB / "hdparm-N-sata.txt")))


def lab_scsi() -> DriveCapabilities:
    return DriveCapabilities(
        identity=_ident("/dev/sda", None, rotational=True), medium="hdd", transport="unknown",
        smart=smartctl.parse(read_recorded(LAB / "smartctl-j-x-scsi.txt")))


def security(**changes: object) -> AtaSecurity:
    base = AtaSecurity(supported=True, enabled=False, locked=False, frozen=False,
                       count_expired=False, enhanced_erase=True, erase_minutes=2,
                       enhanced_erase_minutes=2)
    return dataclasses.replace(base, **changes)


def sata_with(*, security_state: AtaSecurity | None = None, sanitize: frozenset[str] = frozenset(),
              rotational: bool = False) -> DriveCapabilities:
    """The lab's SATA disk with what QEMU lacks: a Security section, sanitize modes."""
    caps = lab_sata()
    assert caps.ata is not None
    ata = dataclasses.replace(caps.ata, security=security_state, sanitize=sanitize)
    return dataclasses.replace(caps, ata=ata, medium="hdd" if rotational else "ssd")


def methods(plan: ErasePlan) -> list[str]:
    return [s.method for s in plan.steps]


def skipped(plan: ErasePlan) -> dict[str, str]:
    return {s.method: s.reason for s in plan.skipped}


def test_shipped_policy_is_valid_and_covers_every_medium() -> None:
    assert set(POLICY.media) == set(catalogue.MEDIA)
    assert POLICY.label.startswith("reseau-solidaire-hautes-alpes v1 (sha256:")
    assert POLICY.source == str(SHIPPED)


def test_lab_nvme_plan_formats_and_says_why_not_sanitize() -> None:
    plan = plan_for(lab_nvme(), POLICY)
    assert plan.medium == "nvme"
    assert methods(plan) == ["nvme-format-user-data", "nist-clear"]
    why = skipped(plan)
    assert "SANICAP bit 0 clear" in why["nvme-sanitize-crypto"]
    assert "SANICAP bit 1 clear" in why["nvme-sanitize-block"]
    assert "FNA bit 2 clear" in why["nvme-format-crypto"]  # QEMU accepts SES=2: not claimed
    first = plan.step
    assert (first.engine, first.options["ses"], first.sanitization_class) == \
        ("nvme-format", 1, "purge")
    assert plan.steps[-1].sanitization_class == "clear"


def test_nvme_with_crypto_sanitize_puts_it_first() -> None:
    caps = lab_nvme()
    assert caps.nvme is not None
    # The lab controller with SANICAP bits 0-1 and FNA bit 2 set (QEMU has neither).
    ctrl = dataclasses.replace(caps.nvme, sanitize_crypto=True, sanitize_block=True,
                               format_crypto_erase=True)
    plan = plan_for(dataclasses.replace(caps, nvme=ctrl), POLICY)
    assert methods(plan) == ["nvme-sanitize-crypto", "nvme-sanitize-block", "nvme-format-crypto",
                             "nvme-format-user-data", "nist-clear"]
    assert plan.step.options == {"action": "crypto", "reads_as": "00"}  # DLFEAT 1: zeros
    assert plan.step.technique == "crypto-erase" and plan.skipped == ()


def test_lab_sata_ssd_without_firmware_methods_gets_overwrite_clear() -> None:
    plan = plan_for(lab_sata(), POLICY)
    assert plan.medium == "sata-ssd" and methods(plan) == ["nist-clear"]
    assert plan.sanitization_class == "clear"
    assert "no ATA SANITIZE feature set" in skipped(plan)["ata-sanitize-block"]
    assert "no ATA Security feature set" in skipped(plan)["ata-security-erase-enhanced"]
    assert plan.hidden is not None and not plan.hidden.any_hidden


def test_enhanced_security_erase_is_clear_on_flash_purge_on_disk() -> None:
    ssd = plan_for(sata_with(security_state=security()), POLICY)
    assert methods(ssd) == ["ata-security-erase-enhanced", "nist-clear"]
    assert ssd.sanitization_class == "clear"
    hdd = plan_for(sata_with(security_state=security(), rotational=True), POLICY)
    assert hdd.medium == "sata-hdd"
    assert methods(hdd) == ["ata-security-erase", "nist-clear"]
    assert hdd.sanitization_class == "purge"
    assert hdd.step.options["reads_as"] == "00" and hdd.step.options["enhanced"] is False


@pytest.mark.parametrize(("state", "reason"), [
    ({"frozen": True}, "security frozen — replug the drive"),
    ({"locked": True, "enabled": True}, "security locked"),
    ({"enhanced_erase": False}, "enhanced security erase not supported"),
    ({"count_expired": True}, "password attempts expired"),
])
def test_security_erase_states_that_rule_it_out(state: dict, reason: str) -> None:
    plan = plan_for(sata_with(security_state=security(**state)), POLICY)
    assert methods(plan) == ["nist-clear"]
    assert reason in skipped(plan)["ata-security-erase-enhanced"]


def test_frozen_drive_is_planned_when_the_policy_may_suspend() -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace("ata_unfreeze: never",
                                                       "ata_unfreeze: suspend")
    plan = plan_for(sata_with(security_state=security(frozen=True)), parse(text))
    assert plan.method == "ata-security-erase-enhanced"
    assert plan.step.options["unfreeze"] == "suspend"


def test_sata_sanitize_block_then_crypto() -> None:
    plan = plan_for(sata_with(sanitize=frozenset({"block", "crypto"})), POLICY)
    assert methods(plan) == ["ata-sanitize-block", "ata-sanitize-crypto", "nist-clear"]
    assert plan.step.sanitization_class == "purge" and plan.step.options == {"mode": "block"}


def test_hpa_is_recorded_for_removal() -> None:
    caps = dataclasses.replace(lab_sata(), hpa=HostProtectedArea(1000, 1200, True),
                               dco_real_max=1500)
    hidden = plan_for(caps, POLICY).hidden
    assert hidden is not None and (hidden.hpa_hidden, hidden.dco_hidden) == (200, 300)


def test_scsi_disk_without_sanitize_and_usb_flash_advice() -> None:
    plan = plan_for(lab_scsi(), POLICY)
    assert plan.medium == "sas-hdd" and methods(plan) == ["nist-clear"]
    assert "not reported" in skipped(plan)["scsi-sanitize-overwrite"]
    usb = DriveCapabilities(identity=_ident("/dev/sdc", "usb", True), medium="usb-flash",
                            transport="usb")
    plan = plan_for(usb, POLICY)
    assert plan.medium == "usb-flash" and methods(plan) == ["nist-clear"]
    assert "détruire" in plan.advice[0].fr and "destroy" in plan.advice[0].en


@pytest.mark.parametrize(("transport", "medium", "key"), [
    ("nvme", "ssd", "nvme"), ("sata", "hdd", "sata-hdd"), ("sata", "ssd", "sata-ssd"),
    ("sas", "hdd", "sas-hdd"), ("usb", "usb-flash", "usb-flash"), ("usb", "hdd", "usb-disk"),
    ("mmc", "sd-mmc", "sd-card"), ("virtio", "unknown", "virtual"), ("loop", "unknown", "virtual"),
    ("unknown", "unknown", "unknown"),
])
def test_medium_keys(transport: str, medium: str, key: str) -> None:
    caps = DriveCapabilities(identity=_ident("/dev/x", transport), medium=medium,  # type: ignore[arg-type]
                             transport=transport)
    assert medium_key(caps) == key


def test_explicit_method_is_checked_against_the_drive() -> None:
    plan = plan_for(lab_nvme(), POLICY, method="dod-3pass", verify="sample")
    assert methods(plan) == ["dod-3pass"] and plan.verify == "sample"
    with pytest.raises(UsageError, match="nvme-sanitize-block cannot run on this drive: SANICAP"):
        plan_for(lab_nvme(), POLICY, method="nvme-sanitize-block")
    with pytest.raises(UsageError, match="ata-sanitize-block cannot run on a nvme drive"):
        plan_for(lab_nvme(), POLICY, method="ata-sanitize-block")
    with pytest.raises(UsageError, match="unknown method 'nope'"):
        plan_for(lab_nvme(), POLICY, method="nope")


def test_plan_round_trips_through_json() -> None:
    plan = plan_for(lab_nvme(), POLICY)
    assert ErasePlan.from_dict(plan.to_dict()) == plan
    assert plan.fallback() is not None and plan.fallback().method == "nist-clear"  # type: ignore[union-attr]
    assert plan.fallback().fallback() is None  # type: ignore[union-attr]


BAD_POLICIES = [
    ("name: x\nversion: 1\nmedia: []\n", "media: expected a mapping"),
    ("version: 0\n", "version: expected a whole number"),
    ("name: x\nversion: 1\nverify: none\nmedia: {}\n", "verify: expected full or sample"),
    ("name: x\nversion: 1\nmedia: {nvme: [nvme-sanitize-blok]}\n",
     "media.nvme[0]: unknown method 'nvme-sanitize-blok'"),
    ("name: x\nversion: 1\nmedia: {sata-ssd: [nvme-format-crypto]}\n",
     "media.sata-ssd[0]: nvme-format-crypto cannot run on sata-ssd drives"),
    ("name: x\nversion: 1\nmedia: {floppy: [nist-clear]}\n", "media.floppy: unknown medium"),
    ("name: x\nversion: 1\nmedia: {nvme: []}\n", "media.nvme: needs at least one method"),
    ("name: x\nversion: 1\nmedia: {sata-hdd: [{method: nist-clear, class: purge}]}\n",
     "media.sata-hdd[0]: nist-clear is Clear on sata-hdd drives: raising it to purge needs"),
    ("name: x\nversion: 1\nmedia: {usb-flash: {methods: [nist-clear], advice: {fr: x}}}\n",
     "media.usb-flash.advice: expected {fr: TEXT, en: TEXT}"),
    ("name: x\nversion: 1\ncolour: blue\nmedia: {}\n", "colour: unknown key"),
    ("name: [x\n", "is not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES)
def test_bad_policies_are_refused_with_the_place_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        parse(text, source="test.yaml")
    assert message in str(err.value) and "test.yaml" in str(err.value)


def test_a_policy_problem_names_its_file_and_line() -> None:
    text = "name: x\nversion: 1\nmedia:\n  nvme:\n    - nist-clear\n    - nvme-sanitize-blok\n"
    with pytest.raises(UsageError) as err:
        parse(text, source="test.yaml")
    assert "test.yaml:6: media.nvme[1]: unknown method 'nvme-sanitize-blok'" in str(err.value)
    assert "test.yaml:3: media.sata-ssd: missing" in str(err.value)    # under its parent
    with pytest.raises(UsageError, match=r"erase policy test.yaml:2 is not valid YAML"):
        parse("name: x\nversion: [1\n", source="test.yaml")


def test_missing_media_are_all_listed_at_once() -> None:
    with pytest.raises(UsageError) as err:
        parse("name: x\nversion: 1\nmedia: {nvme: [nist-clear]}\n")
    assert str(err.value).count("missing: every medium needs its methods") == \
        len(catalogue.MEDIA) - 1


def test_policy_may_raise_overwrite_to_purge_with_a_basis(tmp_path: Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace(
        "  sata-hdd:\n    - ata-sanitize-overwrite\n    - ata-security-erase\n    - nist-clear\n",
        "  sata-hdd:\n    - method: nist-clear\n      class: purge\n"
        "      basis: IEEE 2883-2022 host overwrite of a CMR disk\n")
    (tmp_path / "p.yaml").write_text(text, encoding="utf-8")
    plan = plan_for(sata_with(rotational=True), load(tmp_path / "p.yaml"))
    assert plan.sanitization_class == "purge"
    assert plan.standard.endswith("— policy: IEEE 2883-2022 host overwrite of a CMR disk")


def test_missing_policy_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist: give an existing file"):
        load(tmp_path / "nope.yaml")


def test_nvme_sharing_its_subsystem_warns_that_sanitize_erases_the_rest() -> None:
    caps = dataclasses.replace(lab_nvme(), nvme_other_namespaces=("/dev/nvme0n2",))
    notes = plan_for(caps, POLICY).advice
    assert len(notes) == 1 and "/dev/nvme0n2" in notes[0].fr and "erases them too" in notes[0].en


def test_emmc_with_sanitize_is_purged_and_reads_as_its_erased_byte() -> None:
    ext = mmc.parse_extcsd(read_recorded(DATA / "real" / "mmc" /
                                         "mmc-extcsd-read-samsung-emmc51-8gb.txt"))
    caps = DriveCapabilities(identity=_ident("/dev/mmcblk0", "mmc"), medium="sd-mmc",
                             transport="mmc", mmc=ext)
    plan = plan_for(caps, POLICY)
    assert plan.medium == "emmc" and methods(plan) == ["mmc-sanitize", "nist-clear"]
    assert plan.step.options == {"action": "sanitize", "reads_as": "00"}
    assert plan.sanitization_class == "purge"
    sd = plan_for(dataclasses.replace(caps, mmc=None), POLICY)
    assert sd.medium == "sd-card" and methods(sd) == ["nist-clear"]


REAL = DATA / "real"


def real_sata(name: str, *, lsblk_rota: bool) -> DriveCapabilities:
    """A SATA drive as the probe sees it: hdparm's rotation rate, else lsblk's ROTA."""
    ata = hdparm.parse_identify(read_recorded(REAL / "ata" / name))
    ident = _ident("/dev/sda", "sata", lsblk_rota)
    return DriveCapabilities(identity=ident, medium=medium_of(ident, ata.rotational),
                             transport="sata", ata=ata)


@pytest.mark.parametrize(("name", "medium", "expected", "skipped_reason"), [
    ("hdparm-I-micron-5300-sanitize-frozen.txt", "sata-ssd",
     ["ata-sanitize-block", "ata-sanitize-crypto", "nist-clear"],
     {"ata-security-erase-enhanced": "security frozen"}),
    ("hdparm-I-wd80emaz-sanitize-overwrite-frozen.txt", "sata-hdd",
     ["ata-sanitize-overwrite", "nist-clear"], {"ata-security-erase": "security frozen"}),
    ("hdparm-I-apacer-as340-enhanced.txt", "sata-ssd",
     ["ata-security-erase-enhanced", "nist-clear"],
     {"ata-sanitize-block": "no ATA SANITIZE feature set"}),
    ("hdparm-I-crucial-m4-locked.txt", "sata-ssd", ["nist-clear"],
     {"ata-security-erase-enhanced": "security locked"}),
    ("hdparm-I-toshiba-mk2023gas-frozen.txt", "sata-hdd", ["nist-clear"],
     {"ata-security-erase": "security frozen"}),
])
def test_plans_of_real_sata_drives(name: str, medium: str, expected: list[str],
                                   skipped_reason: dict[str, str]) -> None:
    # The 2006 Toshiba's hdparm printed no rotation rate: lsblk's ROTA=1 decides.
    plan = plan_for(real_sata(name, lsblk_rota=medium == "sata-hdd"), POLICY)
    assert plan.medium == medium and methods(plan) == expected
    for method, reason in skipped_reason.items():
        assert reason in skipped(plan)[method]


def test_plan_of_a_real_nvme_with_crypto_sanitize() -> None:
    ctrl = nvme.parse_id_ctrl(read_recorded(REAL / "nvme" /
                                            "nvme-id-ctrl-solidigm-sbfpf2bu153t.txt"))
    caps = dataclasses.replace(lab_nvme(), nvme=ctrl)
    plan = plan_for(caps, POLICY)
    assert methods(plan)[:2] == ["nvme-sanitize-crypto", "nvme-sanitize-block"]
    assert "nvme-format-crypto" in methods(plan)  # FNA bit 2 set on this drive
    assert all(s.sanitization_class == "purge" for s in plan.steps[:-1])


def test_plans_stored_before_steps_existed_still_load() -> None:
    old = {"method": "dod-3pass", "verify": "full", "verify_seed": None,
           "standard": "DoD 5220.22-M (3 passes)", "engine": "overwrite", "options": {},
           "sanitization_class": "clear", "technique": "overwrite",
           "passes": [{"kind": "zero", "pattern": None, "seed": None},
                      {"kind": "ones", "pattern": None, "seed": None},
                      {"kind": "random", "pattern": None, "seed": "ab" * 32}]}
    plan = ErasePlan.from_dict(old)
    assert plan.method == "dod-3pass" and [p.kind for p in plan.passes] == \
        ["zero", "ones", "random"]
    assert plan.verify == "full" and plan.skipped == () and plan.medium is None


def _smart(drive: str) -> smartctl.SmartReport:
    return smartctl.parse(read_recorded(LAB / f"smartctl-j-x-{drive}.txt"))


def _behind(transport: str, medium: Medium, *, smart: smartctl.SmartReport | None = None,
            scsi_inquiry: scsi.ScsiInquiry | None = None) -> DriveCapabilities:
    return DriveCapabilities(identity=_ident("/dev/sdc", transport), medium=medium,
                             transport=transport, smart=smart, scsi_inquiry=scsi_inquiry)


USB_INQUIRY = scsi.parse_inquiry(read_recorded(LAB / "sg_inq-usb.txt"))
# What a drive answers behind an adapter; the lab's recordings, moved behind one:
# its USB stick's (the bridge answers for the drive), its SATA disk's smartctl answer
# (what smartctl gives through a SAT bridge or a SAS HBA's SATL: protocol ATA), and
# its virtio-scsi disk's (a SCSI drive answering SMART in SCSI).
ADAPTERS: dict[str, tuple[DriveCapabilities, bool | None, str]] = {
    "SATA SSD in a USB dock passing no ATA command": (
        _behind("usb", "usb-flash", smart=_smart("d-scsi-usb"), scsi_inquiry=USB_INQUIRY),
        None, "usb-flash"),
    "SATA disk in a USB dock smartctl reads through (SAT)": (
        _behind("usb", "hdd", smart=_smart("sata")), True, "usb-disk"),
    "SATA SSD on a SAS HBA (SMART through its SATL)": (
        _behind("sas", "ssd", smart=_smart("sata")), True, "sas-ssd"),
    "drive on a SAS HBA that answered no tool": (_behind("sas", "hdd"), None, "sas-hdd"),
    "SATA SSD on a SAS HBA, SMART silent, INQUIRY vendor ATA": (
        _behind("sas", "ssd", scsi_inquiry=scsi.ScsiInquiry("ATA", "Samsung SSD 860", "4B6Q",
                                                            None, "disk")),
        True, "sas-ssd"),
}


@pytest.mark.parametrize("case", ADAPTERS)
def test_a_drive_behind_an_adapter_that_may_be_ata_gets_the_hidden_areas_advice(
        case: str) -> None:
    caps, ata, medium = ADAPTERS[case]
    plan = plan_for(caps, POLICY)
    assert (plan.medium, plan.ata_drive, plan.hidden) == (medium, ata, None)
    (note,) = [n for n in plan.advice if "hdparm -N" in n.en]
    assert "behind its adapter (USB, SAS) this drive may be an ATA (SATA) drive" in note.en
    assert "peut être un disque ATA (SATA)" in note.fr and "Dock the drive on SATA" in note.en


@pytest.mark.parametrize("caps", [
    lab_nvme(), lab_scsi(), dataclasses.replace(lab_scsi(), transport="sas"),
    _behind("sas", "hdd", scsi_inquiry=scsi.parse_inquiry(read_recorded(LAB / "sg_inq-scsi.txt"))),
    _behind("loop", "unknown")], ids=["nvme", "scsi", "sas", "sas-inquiry", "loop"])
def test_a_drive_known_not_to_be_ata_gets_no_hidden_areas_advice(
        caps: DriveCapabilities) -> None:
    plan = plan_for(caps, POLICY)
    assert plan.ata_drive is False
    assert not [n for n in plan.advice if "hdparm -N" in n.en]


def test_sata_drive_whose_hidden_areas_could_not_be_read_says_so() -> None:
    plan = plan_for(dataclasses.replace(lab_sata(), hpa=None), POLICY)
    assert plan.hidden is None
    assert any("non vérifiées" in n.fr and "not checked" in n.en for n in plan.advice)
    assert plan.ata_drive is True
