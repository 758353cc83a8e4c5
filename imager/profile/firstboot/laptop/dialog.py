"""The first-boot window (GTK 3): the person chooses their name and password.

One full-screen page in large text, French first with an "English" switch: the
name (the login derived from it is shown as it is typed), the password twice with
a "show" toggle, optionally the autologin; then "Un instant…" while the account is
made, and "C'est prêt !" with the login to remember. It runs alone on its X display
(no window manager), so it sizes itself to the screen and takes the keyboard focus.
The decisions are in logic.py, the system changes in system.py.

Prints one line per step on stdout ("firstboot: ready", "firstboot: created LOGIN",
"firstboot: problem KEY"), which the tests wait for.
"""

from __future__ import annotations

import importlib
import sys
import threading
from pathlib import Path
from typing import Any

from .logic import (
    TEXTS,
    Account,
    Config,
    Problem,
    SystemFacts,
    account_problems,
    login_from_name,
    name_problem,
    say,
)
from .system import ApplyError, create_account, read_facts

CSS = b"""
window { background-color: #f6f5f4; }
label, entry, button, checkbutton { font-size: 20pt; }
.title { font-size: 34pt; font-weight: bold; }
.subtitle { font-size: 24pt; }
.hint { font-size: 16pt; color: #3d3846; }
.login { font-weight: bold; color: #1a5fb4; }
.error { font-weight: bold; color: #a51d2d; }
entry { min-height: 52px; padding: 4px 14px; }
button.create { padding: 14px 40px; }
"""


def _gtk() -> tuple[Any, Any, Any]:
    """Gtk, Gdk and GLib from PyGObject (Debian: python3-gi, gir1.2-gtk-3.0)."""
    gi = importlib.import_module("gi")
    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    return (importlib.import_module("gi.repository.Gtk"),
            importlib.import_module("gi.repository.Gdk"),
            importlib.import_module("gi.repository.GLib"))


Gtk, Gdk, GLib = _gtk()


def emit(event: str) -> None:
    print(f"firstboot: {event}", flush=True)


class FirstBootWindow:
    """The window and its three pages: the form, "un instant", "c'est prêt"."""

    def __init__(self, config: Config, root: Path, facts: SystemFacts, lang: str) -> None:
        self.config, self.root, self.facts, self.lang = config, root, facts, lang
        self.taken = facts.users | facts.groups
        self.texts: list[tuple[Any, str, dict[str, object]]] = []   # widget, key, values
        self.problem: Problem | None = None
        self.login = ""
        self.window = Gtk.Window(title=say("window_title", lang))
        self.window.set_decorated(False)
        self.stack = Gtk.Stack(transition_type=Gtk.StackTransitionType.CROSSFADE)
        self.stack.add_named(self._form(), "form")
        self.stack.add_named(self._working(), "working")
        self.stack.add_named(self._done(), "done")
        self.window.add(self.stack)
        self.window.connect("map-event", self._on_map)
        self.window.connect("delete-event", lambda *_: True)   # only "Continuer" closes it
        self._fill_screen()
        self.refresh()

    # --- building ---------------------------------------------------------------------

    def _label(self, key: str, *classes: str, **values: object) -> Any:
        label = Gtk.Label(xalign=0, wrap=True)
        for css in classes:
            label.get_style_context().add_class(css)
        self.texts.append((label, key, values))
        return label

    def _column(self) -> Any:
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=14, halign=Gtk.Align.CENTER,
                      valign=Gtk.Align.CENTER)
        box.set_size_request(760, -1)
        return box

    def _entry(self, label: Any, *, secret: bool) -> Any:
        entry = Gtk.Entry(visibility=not secret, activates_default=False)
        if secret:
            entry.set_input_purpose(Gtk.InputPurpose.PASSWORD)
        label.set_mnemonic_widget(entry)
        return entry

    def _form(self) -> Any:
        outer = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
        self.switch = Gtk.Button(halign=Gtk.Align.END, margin=16)
        self.switch.connect("clicked", self._on_switch)
        self.texts.append((self.switch, "switch", {}))
        outer.pack_start(self.switch, False, False, 0)
        box = self._column()
        box.pack_start(self._label("title", "title"), False, False, 0)
        box.pack_start(self._label("subtitle", "subtitle"), False, False, 12)
        name_label = self._label("name")
        self.name = self._entry(name_label, secret=False)
        self.name.connect("changed", self._on_name)
        self.login_label = Gtk.Label(xalign=0, wrap=True)
        self.login_label.get_style_context().add_class("hint")
        pw_label = self._label("password")
        self.password = self._entry(pw_label, secret=True)
        again_label = self._label("again")
        self.again = self._entry(again_label, secret=True)
        self.show = Gtk.CheckButton()
        self.show.connect("toggled", self._on_show)
        self.texts.append((self.show, "show", {}))
        self.autologin = Gtk.CheckButton()
        self.texts.append((self.autologin, "autologin", {}))
        self.error = self._label("", "error")
        self.create = Gtk.Button(halign=Gtk.Align.END)
        self.create.get_style_context().add_class("suggested-action")
        self.create.get_style_context().add_class("create")
        self.create.connect("clicked", self._on_create)
        self.texts.append((self.create, "create", {}))
        self.name.connect("activate", lambda *_: self.password.grab_focus())
        self.password.connect("activate", lambda *_: self.again.grab_focus())
        self.again.connect("activate", self._on_create)
        for widget in (name_label, self.name, self.login_label, pw_label, self.password,
                       self._label("password_hint", "hint", n=self.config.min_password),
                       again_label, self.again, self.show, self.autologin,
                       self._label("autologin_hint", "hint"), self.error, self.create):
            box.pack_start(widget, False, False, 0)
        outer.pack_start(box, True, True, 0)
        return outer

    def _working(self) -> Any:
        box = self._column()
        spinner = Gtk.Spinner(active=True)
        spinner.set_size_request(64, 64)
        box.pack_start(spinner, False, False, 0)
        box.pack_start(self._label("working", "subtitle"), False, False, 0)
        return box

    def _done(self) -> Any:
        box = self._column()
        box.pack_start(self._label("done_title", "title"), False, False, 0)
        self.done_text = Gtk.Label(xalign=0, wrap=True)
        self.done_text.get_style_context().add_class("subtitle")
        box.pack_start(self.done_text, False, False, 0)
        button = Gtk.Button(halign=Gtk.Align.END)
        button.get_style_context().add_class("suggested-action")
        button.get_style_context().add_class("create")
        button.connect("clicked", lambda *_: Gtk.main_quit())
        self.texts.append((button, "continue", {}))
        self.continue_button = button
        box.pack_start(button, False, False, 24)
        return box

    def _fill_screen(self) -> None:
        display = Gdk.Display.get_default()
        monitor = display.get_primary_monitor() or display.get_monitor(0)
        geometry = monitor.get_geometry()
        self.window.set_default_size(geometry.width, geometry.height)
        self.window.move(geometry.x, geometry.y)

    # --- state ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Every text in the current language; the login and the problem shown."""
        self.window.set_title(say("window_title", self.lang))
        for widget, key, values in self.texts:
            if key:
                widget.set_label(say(key, self.lang, **values))
        name = self.name.get_text()
        self.login = login_from_name(name, self.taken) if name_problem(name) is None else ""
        before, _, after = TEXTS["login" if self.login else "login_none"][self.lang].partition(
            "{login}")
        bold = f"<b>{GLib.markup_escape_text(self.login)}</b>" if self.login else ""
        self.login_label.set_markup(GLib.markup_escape_text(before) + bold
                                    + GLib.markup_escape_text(after))
        self.error.set_label(self.problem.say(self.lang) if self.problem else "")
        self.error.set_visible(self.problem is not None)
        self.done_text.set_label(say("done", self.lang, login=self.login))

    def _on_map(self, *_: object) -> bool:
        self.window.get_window().focus(Gdk.CURRENT_TIME)   # no window manager gives it
        self.name.grab_focus()
        emit("ready")
        return False

    def _on_switch(self, *_: object) -> None:
        self.lang = "en" if self.lang == "fr" else "fr"
        self.refresh()

    def _on_name(self, *_: object) -> None:
        self.refresh()

    def _on_show(self, *_: object) -> None:
        for entry in (self.password, self.again):
            entry.set_visibility(self.show.get_active())

    def _on_create(self, *_: object) -> None:
        problems = account_problems(self.name.get_text(), self.password.get_text(),
                                    self.again.get_text(), minimum=self.config.min_password)
        self.problem = problems[0] if problems else None
        self.refresh()
        if self.problem is not None:
            self._focus_problem(self.problem)
            emit(f"problem {self.problem.key}")
            return
        account = Account(self.name.get_text(), self.login, self.password.get_text(),
                          autologin=self.autologin.get_active())
        self.stack.set_visible_child_name("working")
        threading.Thread(target=self._create, args=(account,), daemon=True).start()

    def _focus_problem(self, problem: Problem) -> None:
        if problem.key == "name_empty":
            self.name.grab_focus()
            return
        self.password.set_text("")
        self.again.set_text("")
        self.password.grab_focus()

    def _create(self, account: Account) -> None:
        try:
            create_account(account, self.root, self.config)
        except (ApplyError, OSError) as exc:
            GLib.idle_add(self._failed, str(exc))
            return
        GLib.idle_add(self._created, account.login)

    def _created(self, login: str) -> bool:
        self.stack.set_visible_child_name("done")
        self.continue_button.grab_focus()
        emit(f"created {login}")
        return False

    def _failed(self, detail: str) -> bool:
        self.problem = Problem("failed", (("detail", detail),))
        self.refresh()
        self.stack.set_visible_child_name("form")
        emit("problem failed")
        print(f"premier démarrage : {detail}", file=sys.stderr, flush=True)
        return False


def run_dialog(config: Config, root: Path, *, lang: str = "fr") -> int:
    """Show the dialog until the account is made and the person clicks "Continuer"."""
    provider = Gtk.CssProvider()
    provider.load_from_data(CSS)
    Gtk.StyleContext.add_provider_for_screen(Gdk.Screen.get_default(), provider,
                                             Gtk.STYLE_PROVIDER_PRIORITY_APPLICATION)
    window = FirstBootWindow(config, root, read_facts(root, config), lang)
    window.window.show_all()
    window.refresh()            # show_all shows the empty error label: hide it again
    Gtk.main()
    return 0 if window.stack.get_visible_child_name() == "done" else 1
