"""The first-boot window for real: GTK 3 under Xvfb, driven with xdotool as a
person would (typing, Enter, Alt+E for English), with screenshots; the account it
makes lands in a throwaway Debian 13 root where the profile's package is installed.

The dialog runs with this machine's python3-gi and GTK 3 from the files the
package installed in the root (the program as shipped). Set IMAGER_SCREENSHOTS=DIR
to keep the screenshots (docs/premier-demarrage.png is one of them).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import need
from test_firstboot_system import (  # noqa: F401  (fixtures)
    LIB,
    SLUG,
    WANTS,
    installed,
    trixie_root,
)

PYTHON = "/usr/bin/python3"      # Debian's, with python3-gi (the venv has no GTK)
PASSWORD = "soleil du matin"
SCREEN = "1366x768"              # the commonest screen of a donated 2012 laptop
SNAPSHOT = """
import sys, gi
gi.require_version("Gdk", "3.0")
from gi.repository import Gdk
root = Gdk.get_default_root_window()
shot = Gdk.pixbuf_get_from_window(root, 0, 0, root.get_width(), root.get_height())
shot.savev(sys.argv[1], "png", [], [])
print(len(set(shot.get_pixels())))  # distinct byte values: 1 to 3 when blank
"""


def need_desktop_tools() -> None:
    for tool, package in (("Xvfb", "xvfb"), ("xdotool", "xdotool")):
        need(shutil.which(tool) is not None, f"needs {tool} (apt-get install {package})")
    gtk = subprocess.run([PYTHON, "-c", "import gi; gi.require_version('Gtk', '3.0'); "
                          "from gi.repository import Gtk"], capture_output=True)
    need(gtk.returncode == 0, "needs GTK 3 for python3 (apt-get install python3-gi "
                              "gir1.2-gtk-3.0)")


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb display, like the bare X server the first boot starts."""
    need_desktop_tools()
    read, write = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{SCREEN}x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as fh:
        number = fh.readline().strip()
    try:
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)


class Dialog:
    """The dialog process; its stdout events are read in a thread."""

    def __init__(self, root: Path, display: str) -> None:
        self.display = display
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DISPLAY": display,
                    "LC_ALL": "C.UTF-8", "PYTHONPATH": f"{root}{LIB}/python", "NO_AT_BRIDGE": "1"}
        self.proc = subprocess.Popen(
            [PYTHON, "-B", "-P", "-m", "firstboot", "--dialog", "--root", str(root),
             "--config", f"{root}{LIB}/python/firstboot/config.json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env)
        self.events: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(line.strip().removeprefix("firstboot: "))

    def wait_for(self, event: str, timeout: float = 60) -> None:
        seen = []
        while True:
            try:
                got = self.events.get(timeout=timeout)
            except queue.Empty:
                stderr = self.proc.stderr.read() if self.proc.poll() is not None \
                    and self.proc.stderr else ""
                raise AssertionError(f"no {event!r} from the dialog; saw {seen}; {stderr}") \
                    from None
            seen.append(got)
            if got == event:
                return

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, timeout=60)

    def type(self, text: str, *, then: str | None = "Return") -> None:
        self.xdotool("type", "--delay", "40", text)
        if then:
            self.xdotool("key", then)

    def screenshot(self, path: Path) -> None:
        out = subprocess.run([PYTHON, "-c", SNAPSHOT, str(path)], env=self.env, check=True,
                             capture_output=True, text=True, timeout=60)
        assert int(out.stdout) > 20, f"{path.name}: the screen looks empty"
        keep = os.environ.get("IMAGER_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def dialog(installed: Path, display: str) -> Iterator[Dialog]:  # noqa: F811
    shown = Dialog(installed, display)
    try:
        shown.wait_for("ready")
        yield shown
    finally:
        shown.stop()


@pytest.mark.root
def test_a_person_makes_their_account_in_the_dialog(dialog: Dialog, installed: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    root = installed
    dialog.type("Marie-Hélène Dupont", then=None)
    dialog.screenshot(tmp_path / "premier-demarrage.png")
    dialog.xdotool("key", "Return")
    dialog.wait_for("page password")

    dialog.type("court")
    dialog.type("court")
    dialog.wait_for("problem password_short")
    dialog.screenshot(tmp_path / "premier-demarrage-trop-court.png")
    dialog.type(PASSWORD)
    dialog.type(PASSWORD + "!")
    dialog.wait_for("problem password_mismatch")
    dialog.type(PASSWORD)
    dialog.type(PASSWORD)
    dialog.wait_for("page session")
    dialog.screenshot(tmp_path / "premier-demarrage-session.png")

    dialog.xdotool("key", "alt+e")
    dialog.wait_for("lang en")
    dialog.screenshot(tmp_path / "premier-demarrage-english.png")
    dialog.xdotool("key", "alt+f")
    dialog.wait_for("lang fr")

    dialog.xdotool("key", "Return")          # "Créer mon compte" has the focus
    dialog.wait_for("created marie-helene")
    dialog.screenshot(tmp_path / "premier-demarrage-pret.png")
    dialog.xdotool("key", "Return")          # "Continuer": the window closes
    assert dialog.proc.wait(timeout=30) == 0

    passwd = (root / "etc/passwd").read_text()
    assert ":Marie-Hélène Dupont:/home/marie-helene:/bin/bash" in passwd
    assert (root / "etc/hostname").read_text() == "poste-rs05-0042\n"
    assert not (root / f"etc/lightdm/lightdm.conf.d/70-{SLUG}-autologin.conf").exists()
    assert not (root / WANTS).is_symlink(), "the first boot disabled itself"


@pytest.mark.root
def test_the_dialog_offers_autologin_and_an_empty_name_is_refused(
        dialog: Dialog, installed: Path) -> None:  # noqa: F811
    dialog.xdotool("key", "Return")                      # no name yet
    dialog.wait_for("problem name_empty")
    dialog.type("Awa Diallo")
    dialog.wait_for("page password")
    dialog.xdotool("key", "ctrl+a")                      # nothing there: no crash
    dialog.type(PASSWORD)
    dialog.type(PASSWORD)
    dialog.wait_for("page session")
    dialog.xdotool("key", "shift+Tab", "shift+Tab", "Down", "space")   # "Oui"
    dialog.xdotool("key", "Tab", "Tab", "Return")
    dialog.wait_for("created awa")
    autologin = installed / f"etc/lightdm/lightdm.conf.d/70-{SLUG}-autologin.conf"
    assert "autologin-user=awa\n" in autologin.read_text()
