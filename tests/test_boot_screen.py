"""The live system's parts that need no VM: the French screen of each stage, the
serial lines, the kernel command line, the agent's status turned into stages, the
DHCP lease, and the build keys (a code change rebuilds imager.img only)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from imager.boot import live, stages
from imager.boot.cmdline import CA_PATH, parse_cmdline
from imager.boot.initscript import init_script, udhcpc_script
from imager.boot.network import parse_lease, wired_interfaces
from imager.boot.screen import CALL, SEARCHING, panel, plain, render
from imager.boot.session import LAPTOP_DONE, UNREACHABLE_ATTEMPTS, Watch

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\033\[[0-9;?]*[A-Za-z]|\033\[9;0\]")

# -- the screen -----------------------------------------------------------------------


@pytest.mark.parametrize("stage", [*stages.STAGES, SEARCHING])
def test_every_stage_has_a_french_screen_that_fits(stage: str) -> None:
    p = panel(stage, {"code": "7K3Q-9X2M", "kind": "erase", "percent": "42",
                      "station": "https://10.0.2.2:8470", "ip": "10.0.2.15/24"})
    assert p.title and p.lines and p.title != "Système de l'atelier"
    for columns, rows in ((64, 24), (80, 25), (120, 33)):
        text = ANSI.sub("", render(p, columns=columns, rows=rows))
        lines = text.split("\n")
        assert max(len(line) for line in lines) <= columns, text
        assert len(lines) <= rows, text


def test_the_station_unreachable_screen_says_what_to_do() -> None:
    p = panel(stages.FAILED, {"reason": stages.STATION_UNREACHABLE})
    assert p.tone == "error" and p.title == "La station ne répond pas"
    assert p.lines[:4] == ("La station ne répond pas.", "Vérifiez le câble réseau.",
                           "Puis redémarrez l'ordinateur.", CALL)
    assert "Code : station-unreachable" in plain(p)


@pytest.mark.parametrize("stage, reason", [
    (stages.NETWORK_FAILED, stages.NO_CARRIER), (stages.NETWORK_FAILED, stages.NO_INTERFACE),
    (stages.NETWORK_FAILED, stages.NO_DHCP), (stages.FAILED, stages.STATION_NOT_TRUSTED),
    (stages.FAILED, stages.STATION_REFUSED), (stages.FAILED, stages.NO_STATION),
    (stages.FAILED, stages.NO_STATION_CA), (stages.FAILED, stages.AGENT_EXITED),
    (stages.FAILED, stages.SESSION_EXITED)])
def test_each_failure_says_whom_to_call_in_short_sentences(stage: str, reason: str) -> None:
    p = panel(stage, {"reason": reason})
    assert p.tone == "error"
    assert any("responsable de l'atelier" in line for line in p.lines)
    assert all(len(line.split()) <= 12 for line in p.lines), p.lines   # FALC: short
    assert f"Code : {reason}" in p.details


def test_a_pending_laptop_shows_its_code_large_and_spaced() -> None:
    p = panel(stages.PENDING, {"code": "7k3q-9x2m", "agent": "4"})
    assert p.tone == "wait" and "Donnez ce code au technicien :" in p.lines
    assert "7 K 3 Q - 9 X 2 M" in render(p)
    assert "7 K 3 Q - 9 X 2 M" in plain(p)


def test_a_job_shows_what_it_does_and_a_bar() -> None:
    erase = panel(stages.JOB, {"kind": "erase", "percent": "42.5"})
    assert erase.title == "Effacement des disques" and erase.percent == 42.5
    assert "N'éteignez pas l'ordinateur." in erase.lines
    assert re.search(r"\[#+\.+\]  42 %", render(erase))
    assert panel(stages.JOB, {"kind": "image"}).title == "Installation du système"
    assert panel(stages.JOB, {"kind": "image", "percent": "x"}).percent is None


def test_a_job_says_its_step_as_the_bar_starts_again_at_each() -> None:
    assert "Étape 2 : vérification." in panel(stages.JOB, {"kind": "erase",
                                                            "phase": "verify"}).lines
    assert "Étape 1 : copie du système." in panel(stages.JOB, {"kind": "image",
                                                                "phase": "write"}).lines
    assert not any(line.startswith("Étape") for line in panel(stages.JOB,
                                                              {"kind": "erase"}).lines)


def test_the_offline_done_screen_says_it_is_over_and_what_to_do_with_the_stick() -> None:
    p = panel(stages.OFFLINE_DONE, {"erased": "1", "installed": "1"})
    assert p.tone == "ok" and p.title == "Travail terminé"
    assert p.lines[:4] == ("Effacement terminé et vérifié.", "Système installé.",
                           "Éteignez l'ordinateur.",
                           "Retirez la clé et rapportez-la à la station.")
    assert "s'éteint tout seul" in p.lines[4]
    assert "Système installé." not in panel(stages.OFFLINE_DONE, {"installed": "0"}).lines


def test_from_a_stick_the_done_screen_says_it_powers_off_not_restarts() -> None:
    assert "L'ordinateur redémarre tout seul." in panel(stages.DONE, {}).lines
    usb = panel(stages.DONE, {"boot": "usb"})
    assert "L'ordinateur s'éteint tout seul." in usb.lines
    assert "Ensuite, retirez la clé USB." in usb.lines


@pytest.mark.parametrize("reason", [stages.NO_STICK, stages.ERASE_FAILED,
                                    stages.IMAGE_FAILED, stages.NO_DRIVE])
def test_an_offline_failure_says_to_switch_off_and_bring_it_back(reason: str) -> None:
    p = panel(stages.FAILED, {"reason": reason})
    assert p.tone == "error" and p.title != "Le programme s'est arrêté"
    assert "Éteignez l'ordinateur." in p.lines
    assert any("bouton marche" in line for line in p.lines)
    assert any("responsable de l'atelier" in line for line in p.lines)
    assert all(len(line.split()) <= 12 for line in p.lines), p.lines
    assert f"Code : {reason}" in p.details


def test_an_undone_drive_says_not_to_give_the_laptop_away() -> None:
    p = panel(stages.FAILED, {"reason": stages.ERASE_FAILED, "failed": "1"})
    assert "Ne donnez pas cet ordinateur." in p.lines
    assert "Rapportez l'ordinateur et la clé USB à l'atelier." in p.lines


# -- the serial lines -------------------------------------------------------------------


def test_a_stage_line_is_one_line_and_reads_back() -> None:
    text = stages.line(stages.NETWORK, ip="10.0.2.15/24", iface="enp0s2", router=None,
                       note="two words")
    assert text == "IMAGER-LIVE stage=network ip=10.0.2.15/24 iface=enp0s2 note=two_words"
    assert stages.parse(f"[ 12.3] {text}") == (
        stages.NETWORK, {"ip": "10.0.2.15/24", "iface": "enp0s2", "note": "two_words"})
    assert stages.parse("IMAGER-LIVE stage=nonsense") is None
    with pytest.raises(ValueError, match="unknown live stage"):
        stages.line("nonsense")


def test_the_init_prints_the_stage_lines_of_the_module_and_is_valid_sh() -> None:
    init = init_script()
    assert "IMAGER-LIVE stage=start kernel=" in init
    assert "IMAGER-LIVE stage=failed reason=session-exited" in init
    assert "python3 -m imager.boot.session" in init and CA_PATH in init
    for script in (init, udhcpc_script()):
        assert "{" not in script.replace("${mask:-$subnet}", "")
        subprocess.run(["sh", "-n"], input=script, text=True, check=True)


# -- the kernel command line --------------------------------------------------------------


def test_the_command_line_contract() -> None:
    cmd = parse_cmdline("BOOT_IMAGE=vmlinuz console=tty0 console=ttyS0,115200 "
                        "imager.station=https://10.0.2.2:8470/ imager.token=AbC-_12 "
                        "imager.mac=52-54-00-AB-CD-EF imager.boot=network quiet")
    assert (cmd.station, cmd.token, cmd.mac, cmd.boot) == (
        "https://10.0.2.2:8470", "AbC-_12", "52:54:00:ab:cd:ef", "network")
    assert cmd.problems == ()
    bare = parse_cmdline("console=ttyS0 imager.boot=usb")
    assert (bare.station, bare.token, bare.mac, bare.boot) == (None, None, None, "usb")


def test_a_command_line_given_wrong_is_said_not_a_crash() -> None:
    cmd = parse_cmdline('imager.station=station.lan imager.mac=nope imager.boot=cdrom "x')
    assert (cmd.station, cmd.mac, cmd.boot) == (None, None, "network")
    assert len(cmd.problems) == 3 and "imager.station=station.lan" in cmd.problems[0]


# -- the agent's status -> stages -----------------------------------------------------------


def test_the_agents_status_becomes_stages_each_printed_once() -> None:
    watch = Watch(started=100.0)
    assert watch.update(None, now=101) == []
    one = {"state": "unreachable", "attempt": 1, "trusted": True}
    assert watch.update(one, now=102) == []
    many = {**one, "attempt": UNREACHABLE_ATTEMPTS}
    failed = (stages.FAILED, {"reason": stages.STATION_UNREACHABLE})
    assert watch.update(many, now=103) == [failed]
    assert watch.update({**many, "attempt": 9}, now=104) == []
    assert watch.current == failed
    pending = {"state": "pending", "agent": 4, "code": "7K3Q-9X2M"}
    assert watch.update(pending, now=105) == [
        (stages.PENDING, {"agent": "4", "code": "7K3Q-9X2M"})]
    assert watch.update({"state": "registered", "agent": 4}, now=106) == [
        (stages.ENROLLED, {"agent": "4"})]
    job = {"state": "job", "job": 7, "kind": "erase", "phase": "overwrite", "total": 1000}
    assert watch.update({**job, "done": 420}, now=107) == [
        (stages.JOB, {"job": "7", "kind": "erase", "phase": "overwrite", "percent": "40"})]
    assert watch.update({**job, "done": 450}, now=108) == []       # same tens
    assert watch.current[1]["percent"] == "45.0"                    # the screen: more
    assert watch.update({"state": "job-ended", "job": 7}, now=109) == [
        (stages.ENROLLED, {"agent": "4"})]
    assert watch.update(None, now=110, exit_code=LAPTOP_DONE) == [
        (stages.DONE, {"agent": "4"})]


def test_a_silent_station_fails_after_a_while_an_untrusted_one_at_once() -> None:
    watch = Watch(started=0.0)
    assert watch.update(None, now=10) == []
    assert watch.update(None, now=60) == [(stages.FAILED,
                                           {"reason": stages.STATION_UNREACHABLE})]
    untrusted = {"state": "unreachable", "attempt": 1, "trusted": False}
    assert Watch(0.0).update(untrusted, now=1) == [
        (stages.FAILED, {"reason": stages.STATION_NOT_TRUSTED})]
    assert Watch(0.0).update({"state": "refused", "reason": "revoked"}, now=1) == [
        (stages.FAILED, {"reason": stages.STATION_REFUSED})]
    assert Watch(0.0).update(None, now=1, exit_code=2) == [
        (stages.FAILED, {"reason": stages.AGENT_EXITED, "status": "2"})]


def test_the_live_session_knows_the_agents_done_code() -> None:
    from imager.cli.agent import LAPTOP_DONE as CLI_DONE
    assert LAPTOP_DONE == CLI_DONE


# -- the network -------------------------------------------------------------------------------


def test_a_lease_from_the_dhcp_script() -> None:
    lease = parse_lease("enp0s2", "52:54:00:12:34:56",
                        "ip=10.0.2.15\nmask=255.255.255.0\nrouter=10.0.2.2\ndns=10.0.2.3\n"
                        "server=10.0.2.2\n")
    assert lease is not None and lease.ip == "10.0.2.15/24" and lease.router == "10.0.2.2"
    assert lease.dns == ("10.0.2.3",)
    assert parse_lease("eth0", "x", "ip=192.168.1.9\nmask=16\n").ip == "192.168.1.9/16"
    assert parse_lease("eth0", "x", "router=1.2.3.4\n") is None


def test_wired_interfaces_are_ethernet_devices_without_wireless(tmp_path: Path) -> None:
    net = tmp_path / "class/net"
    for name, kind, device, wireless in (("lo", "772", False, False),
                                         ("enp0s31f6", "1", True, False),
                                         ("wlp2s0", "1", True, True),
                                         ("docker0", "1", False, False)):
        (net / name).mkdir(parents=True)
        (net / name / "type").write_text(kind + "\n")
        (net / name / "address").write_text("AA:BB:CC:DD:EE:0" + str(len(name)) + "\n")
        if device:
            (net / name / "device").mkdir()
        if wireless:
            (net / name / "wireless").mkdir()
    assert [(i.name, i.mac) for i in wired_interfaces(tmp_path)] == [
        ("enp0s31f6", "aa:bb:cc:dd:ee:09")]


# -- the build keys ------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of imager's source tree (the package, shipped profiles, pyproject)."""
    tree = tmp_path / "src"
    shutil.copytree(ROOT / "imager", tree / "imager",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "profiles", tree / "profiles")
    shutil.copyfile(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_a_code_change_rebuilds_imager_img_only(source: Path) -> None:
    os_before, code_before = live.os_key(source), live.code_key(source)
    plan = source / "imager" / "erase" / "plan.py"
    plan.write_text(plan.read_text() + "\n# a change\n")
    assert live.os_key(source) == os_before
    assert live.code_key(source) != code_before
    after = live.code_key(source)
    policy = source / "profiles" / "erase-policy.yaml"
    policy.write_text(policy.read_text() + "\n# a change\n")
    assert live.code_key(source) != after
    assert Path("profiles/erase-policy.yaml") in live.code_files(source)
    assert not any("__pycache__" in str(p) for p in live.code_files(source))


def test_a_dependency_change_rebuilds_the_os_part(source: Path) -> None:
    before = live.os_key(source)
    pyproject = source / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"PyYAML>=6.0"', '"PyYAML>=6.0.1"'))
    assert live.os_key(source) != before
    assert live.recipe(source)["requirements"].count("PyYAML>=6.0.1") == 1
