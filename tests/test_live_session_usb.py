"""The live session booted from a USB stick, the parts that need no VM: the final
stage judged from the offline agent's spooled events, the station's reachability
(a real socket), the spool's new events, the offline agent's status turned into
stages, the agent's command lines and name, and the network given up on in a
bounded time. The whole flow runs in QEMU in tests/test_usb_flow.py."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from imager.boot import network, stages, stick
from imager.boot.cmdline import LiveCmdline
from imager.boot.session import Session, Watch, agent_name
from imager.boot.usb_data import SENT, SUFFIX


def _erasure(outcome: str) -> dict[str, Any]:
    return {"kind": "offline_erasure", "data": {"report": {"outcome": outcome}}}


def _deployment(ok: bool) -> dict[str, Any]:
    return {"kind": "offline_deployment", "data": {"result": {"ok": ok}}}


# -- the final stage ------------------------------------------------------------------


def test_every_drive_erased_and_the_system_installed_is_done() -> None:
    events = [{"kind": "machine_inventory", "data": {}}, _erasure("erased"),
              _deployment(True)]
    assert stick.outcome(events, image=True) == (
        stages.OFFLINE_DONE, {"erased": "1", "installed": "1"})
    assert stick.outcome([_erasure("erased")], image=False) == (
        stages.OFFLINE_DONE, {"erased": "1", "installed": "0"})


def test_a_drive_not_erased_fails_even_when_another_one_was() -> None:
    stage, fields = stick.outcome([_erasure("erased"), _deployment(True),
                                   _erasure("failed")], image=True)
    assert (stage, fields["reason"], fields["failed"], fields["erased"]) == (
        stages.FAILED, stages.ERASE_FAILED, "1", "1")
    assert stick.outcome([_erasure("unverified")], image=False)[1]["reason"] \
        == stages.ERASE_FAILED
    assert stick.outcome([_erasure("interrupted")], image=False)[1]["reason"] \
        == stages.ERASE_FAILED


def test_a_system_not_installed_customised_or_attempted_fails() -> None:
    not_customised = {"kind": "offline_deployment", "data": {
        "result": {"ok": True}, "after": {"error": "refusing to write /dev/nvme0n1"}}}
    for events in ([_erasure("erased"), _deployment(False)], [_erasure("erased")],
                   [_erasure("erased"), not_customised]):
        stage, fields = stick.outcome(events, image=True)
        assert (stage, fields["reason"]) == (stages.FAILED, stages.IMAGE_FAILED)


def test_no_drive_offered_fails() -> None:
    assert stick.outcome([{"kind": "machine_inventory", "data": {}}], image=True) == (
        stages.FAILED, {"reason": stages.NO_DRIVE})


# -- the spool ----------------------------------------------------------------------------


def _spool_event(spool: Path, seq: int, kind: str) -> Path:
    path = spool / f"{seq:020d}-{'ab' * 16}{SUFFIX}"
    path.write_text(json.dumps({"id": "ab" * 16, "seq": seq, "kind": kind, "data": {}}))
    return path


def test_only_the_events_spooled_by_this_run_count(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / SENT).mkdir(parents=True)
    _spool_event(spool, 1, "offline_erasure")            # another laptop's, not synced yet
    before = stick.spooled(spool)
    assert len(before) == 1
    _spool_event(spool / SENT, 2, "offline_erasure")     # sent: never counted
    _spool_event(spool, 3, "machine_inventory")
    _spool_event(spool, 4, "offline_erasure")
    (spool / f"{5:020d}-{'cd' * 16}{SUFFIX}").write_text("{damaged")
    assert [e["seq"] for e in stick.new_events(spool, before)] == [3, 4]


def test_a_kit_with_a_system_folder_carries_an_image(tmp_path: Path) -> None:
    assert not stick.kit_has_image(tmp_path)
    (tmp_path / stick.KIT_IMAGES).mkdir()
    assert not stick.kit_has_image(tmp_path)
    (tmp_path / stick.KIT_IMAGES / "lab").mkdir()
    assert stick.kit_has_image(tmp_path)


# -- the station ---------------------------------------------------------------------------


def test_a_station_accepting_connections_is_reachable_a_closed_port_is_not() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert stick.reachable(f"https://127.0.0.1:{port}/", seconds=1)
    started = time.monotonic()
    assert not stick.reachable(f"http://127.0.0.1:{port}", seconds=1.5)
    assert time.monotonic() - started < 6
    assert not stick.reachable("https://:8470", seconds=0)
    assert not stick.reachable("https://host:99999", seconds=0)


# -- the offline agent's status ---------------------------------------------------------------


def test_the_offline_agents_jobs_are_stages_its_end_is_not() -> None:
    watch = Watch(0.0, offline=True)
    assert watch.update(None, now=500) == []           # never "station unreachable"
    erase = {"state": "job", "job": "nvme0n1", "kind": "erase", "phase": "format",
             "done": 1, "total": 4}
    assert watch.update(erase, now=1) == [
        (stages.JOB, {"job": "nvme0n1", "kind": "erase", "phase": "format", "percent": "20"})]
    image = {**erase, "kind": "image", "phase": "write", "done": 0}
    assert watch.update(image, now=2)[0][1]["kind"] == "image"
    assert watch.update({"state": "job-ended", "job": "nvme0n1"}, now=3) == []
    assert watch.update(image, now=4, exit_code=0) == []
    assert watch.update(None, now=5, exit_code=3) == []
    assert watch.current[0] == stages.JOB


# -- the agent's command lines ----------------------------------------------------------------


def _sys_root(tmp_path: Path, *, serial: str | None, macs: tuple[str, ...] = ()) -> Path:
    root = tmp_path / "sys"
    (root / "class/dmi/id").mkdir(parents=True)
    if serial is not None:
        (root / "class/dmi/id/product_serial").write_text(serial + "\n")
    for i, mac in enumerate(macs):
        iface = root / "class/net" / f"enp{i}s0"
        (iface / "device").mkdir(parents=True)
        (iface / "type").write_text("1\n")
        (iface / "address").write_text(mac + "\n")
    return root


def test_the_agent_is_named_after_the_serial_else_a_mac(tmp_path: Path) -> None:
    assert agent_name(None, _sys_root(tmp_path / "a", serial="PF3ABCD")) == "portable PF3ABCD"
    no_serial = _sys_root(tmp_path / "b", serial="To be filled by O.E.M.",
                          macs=("AA:BB:CC:00:11:22",))
    assert agent_name("52:54:00:00:00:01", no_serial) == "portable 52:54:00:00:00:01"
    assert agent_name(None, no_serial) == "portable aa:bb:cc:00:11:22"
    assert agent_name(None, _sys_root(tmp_path / "c", serial=None)) == "portable sans numéro"


def test_the_offline_agent_erases_with_the_sticks_kit_into_its_spool(tmp_path: Path) -> None:
    session = Session(LiveCmdline(boot="usb"), run_dir=tmp_path / "run")
    argv = session.offline_argv(Path("/run/imager/stick/kit"), Path("/run/imager/stick/spool"))
    assert argv[1:6] == ["-m", "imager", "agent", "run", "--machine"]
    joined = " ".join(argv)
    for part in ("--offline-kit /run/imager/stick/kit", "--erase", "--once",
                 "--spool /run/imager/stick/spool", "--boot usb",
                 f"--status-file {tmp_path / 'run' / 'status.json'}"):
        assert part in joined
    assert "--station" not in argv
    assert argv[argv.index("--name") + 1].startswith("portable ")


def test_the_online_agent_from_a_stick_spools_on_the_stick(tmp_path: Path) -> None:
    session = Session(LiveCmdline(station="https://10.0.2.2:8470", boot="usb"),
                      run_dir=tmp_path / "run")
    argv = session.agent_argv(Path("/run/imager/stick/spool"))
    assert argv[argv.index("--spool") + 1] == "/run/imager/stick/spool"
    assert argv[argv.index("--station") + 1] == "https://10.0.2.2:8470"
    assert argv[argv.index("--boot") + 1] == "usb"
    assert "--erase" not in argv and "--offline-kit" not in argv


# -- the network, given up on -----------------------------------------------------------------


def test_a_laptop_with_no_wired_interface_gives_up_on_the_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "INTERFACE_SECONDS", 0.5)
    sys_root = _sys_root(tmp_path, serial=None)
    (sys_root / "class/net").mkdir()
    told: list[tuple[str, dict[str, str]]] = []
    net = network.Network(tmp_path / "run", "/nonexistent", sys_root=sys_root)
    started = time.monotonic()
    assert net.try_up(None, on_failure=lambda r, f: told.append((r, f))) is None
    assert time.monotonic() - started < 5
    assert told == [(stages.NO_INTERFACE, {"mac": "-"})]


# -- Secure Boot, as the certificate says it ---------------------------------------------------


def test_secure_boot_is_read_under_efis_global_variable_guid(tmp_path: Path) -> None:
    """The UEFI spec's EFI_GLOBAL_VARIABLE GUID, written out here rather than taken
    from the code (a wrong digit read False on every laptop, Secure Boot on or off)."""
    from imager.host.owner import secure_boot
    efivars = tmp_path / "firmware/efi/efivars"
    efivars.mkdir(parents=True)
    name = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
    (efivars / name).write_bytes(b"\x06\x00\x00\x00\x01")
    assert secure_boot(tmp_path) is True
    (efivars / name).write_bytes(b"\x06\x00\x00\x00\x00")
    assert secure_boot(tmp_path) is False
