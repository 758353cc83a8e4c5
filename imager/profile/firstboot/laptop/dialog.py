"""The first-boot window (GTK 3): the person chooses their name and password.

Full screen, large text, one thing at a time (FALC), French first with an
"English" switch (Alt+E; back with Alt+F):
  1. the name; the login made from it is shown as it is typed;
  2. the password, twice, with a "show" toggle;
  3. autologin or not (no by default); "Créer mon compte";
then "Un instant…" while the account is made, and "C'est prêt !" with the login
to remember; "Continuer" closes the window and LightDM comes next. The Enter key
moves on at every step. It runs alone on its X display (no window manager), so it
sizes itself to the screen and takes the keyboard focus. The decisions are in
logic.py, the system changes in system.py.

Prints one line per event on stdout ("firstboot: ready", "firstboot: page NAME",
"firstboot: problem KEY", "firstboot: lang en", "firstboot: created LOGIN"),
which the tests wait for.
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
    password_problem,
    say,
)
from .system import ApplyError, create_account, read_facts

CSS = b"""
window { background-color: #f6f5f4; }
label, entry, button, radiobutton, checkbutton { font-size: 20pt; }
.title { font-size: 32pt; font-weight: bold; }
.subtitle { font-size: 24pt; }
.step { font-size: 16pt; color: #3d3846; }
.hint { font-size: 16pt; color: #3d3846; }
.error { font-weight: bold; color: #a51d2d; }
entry { min-height: 52px; padding: 4px 14px; }
button.big { padding: 12px 36px; }
check, radio { min-width: 28px; min-height: 28px; margin-right: 10px; }
"""
PAGES = ("name", "password", "session")
MAX_CHARS = 40          # a wrapped text's width: the column stays narrow enough to read


def _gtk() -> tuple[Any, Any, Any]:
    """Gtk, Gdk and GLib from PyGObject (Debian: python3-gi, gir1.2-gtk-3.0)."""
    gi = importlib.import_module("gi")
    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    return (importlib.import_module("gi.repository.Gtk"),
            importlib.import_module("gi.repository.Gdk"),
            importlib.import_module("gi.repository.GLib"))


Gtk, Gdk, GLib = _gtk()


def _escape(text: str) -> str:
    return str(GLib.markup_escape_text(text))


def emit(event: str) -> None:
    print(f"firstboot: {event}", flush=True)


class FirstBootWindow:
    """The window: a header, then one page at a time (name, password, session,
    working, done)."""

    def __init__(self, config: Config, root: Path, facts: SystemFacts, lang: str) -> None:
        self.config, self.root, self.lang = config, root, lang
        self.taken = facts.users | facts.groups
        self.texts: list[tuple[Any, str, dict[str, object]]] = []   # widget, key, values
        self.problem: Problem | None = None
        self.login = ""
        self.mapped = False
        self.window = Gtk.Window(title=say("window_title", lang))
        self.window.set_decorated(False)
        self.window.connect("delete-event", lambda *_: True)   # only "Continuer" closes it
        self.window.connect("map-event", self._on_map)
        self.stack = Gtk.Stack(transition_type=Gtk.StackTransitionType.NONE)
        for name, page in (("name", self._name_page()), ("password", self._password_page()),
                           ("session", self._session_page()), ("working", self._working()),
                           ("done", self._done())):
            self.stack.add_named(page, name)
        scrolled = Gtk.ScrolledWindow(hscrollbar_policy=Gtk.PolicyType.NEVER)
        scrolled.add(self._frame(self.stack))    # small screens scroll rather than crop
        self.window.add(scrolled)
        self._fill_screen()

    # --- building -----------------------------------------------------------------------

    def _text(self, widget: Any, key: str, **values: object) -> Any:
        self.texts.append((widget, key, values))
        return widget

    def _label(self, key: str, *classes: str, **values: object) -> Any:
        label = Gtk.Label(xalign=0, wrap=True, max_width_chars=MAX_CHARS)
        for css in classes:
            label.get_style_context().add_class(css)
        return self._text(label, key, **values)

    def _button(self, key: str, on_click: Any, *, big: bool = False) -> Any:
        button = self._text(Gtk.Button(use_underline=True), key)
        if big:
            button.get_style_context().add_class("suggested-action")
            button.get_style_context().add_class("big")
        button.connect("clicked", on_click)
        return button

    def _box(self, spacing: int = 12) -> Any:
        return Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=spacing)

    def _frame(self, stack: Any) -> Any:
        """The switch at the top right, the title, then the pages in a centred column."""
        outer = self._box(0)
        self.switch = self._button("switch", self._on_switch)
        self.switch.set_halign(Gtk.Align.END)
        self.switch.set_margin_top(12)
        self.switch.set_margin_end(12)
        outer.pack_start(self.switch, False, False, 0)
        column = self._box(10)
        column.set_halign(Gtk.Align.CENTER)
        column.set_valign(Gtk.Align.CENTER)
        column.set_size_request(780, -1)
        column.set_margin_bottom(24)
        column.pack_start(self._label("title", "title"), False, False, 0)
        self.subtitle = self._label("subtitle", "subtitle")
        column.pack_start(self.subtitle, False, False, 0)
        self.step = Gtk.Label(xalign=0)
        self.step.get_style_context().add_class("step")
        column.pack_start(self.step, False, False, 8)
        self.error = self._label("", "error")
        column.pack_start(self.error, False, False, 0)
        column.pack_start(stack, False, False, 0)
        outer.pack_start(column, True, True, 0)
        return outer

    def _entry(self, label: Any, *, secret: bool) -> Any:
        entry = Gtk.Entry(visibility=not secret)
        if secret:
            entry.set_input_purpose(Gtk.InputPurpose.PASSWORD)
        label.set_mnemonic_widget(entry)
        return entry

    def _buttons(self, *buttons: Any) -> Any:
        row = Gtk.Box(spacing=16, halign=Gtk.Align.END, margin_top=12)
        for button in buttons:
            row.pack_start(button, False, False, 0)
        return row

    def _name_page(self) -> Any:
        page = self._box()
        label = self._label("name")
        self.name = self._entry(label, secret=False)
        self.name.connect("changed", lambda *_: self.refresh())
        self.name.connect("activate", self._on_next)
        self.login_label = Gtk.Label(xalign=0, wrap=True, max_width_chars=MAX_CHARS)
        self.login_label.get_style_context().add_class("hint")
        for widget in (label, self.name, self.login_label,
                       self._buttons(self._button("next", self._on_next, big=True))):
            page.pack_start(widget, False, False, 0)
        return page

    def _password_page(self) -> Any:
        page = self._box()
        label = self._label("password")
        self.password = self._entry(label, secret=True)
        again_label = self._label("again")
        self.again = self._entry(again_label, secret=True)
        self.password.connect("activate", lambda *_: self.again.grab_focus())
        self.again.connect("activate", self._on_next)
        self.show = self._text(Gtk.CheckButton(), "show")
        self.show.connect("toggled", self._on_show)
        for widget in (label, self.password,
                       self._label("password_hint", "hint", n=self.config.min_password),
                       again_label, self.again, self.show,
                       self._buttons(self._button("back", self._on_back),
                                     self._button("next", self._on_next, big=True))):
            page.pack_start(widget, False, False, 0)
        return page

    def _session_page(self) -> Any:
        page = self._box()
        self.no_autologin = self._text(Gtk.RadioButton(), "autologin_no")
        self.autologin = self._text(Gtk.RadioButton(group=self.no_autologin), "autologin_yes")
        self.create = self._button("create", self._on_create, big=True)
        for widget in (self._label("autologin"), self.no_autologin, self.autologin,
                       self._label("autologin_hint", "hint"),
                       self._buttons(self._button("back", self._on_back), self.create)):
            page.pack_start(widget, False, False, 0)
        return page

    def _working(self) -> Any:
        page = self._box()
        spinner = Gtk.Spinner(active=True, halign=Gtk.Align.START)
        spinner.set_size_request(64, 64)
        page.pack_start(spinner, False, False, 0)
        page.pack_start(self._label("working", "subtitle"), False, False, 0)
        return page

    def _done(self) -> Any:
        page = self._box()
        page.pack_start(self._label("done_title", "title"), False, False, 0)
        self.done_text = Gtk.Label(xalign=0, wrap=True, max_width_chars=MAX_CHARS)
        self.done_text.get_style_context().add_class("subtitle")
        page.pack_start(self.done_text, False, False, 0)
        self.continue_button = self._button("continue", lambda *_: Gtk.main_quit(), big=True)
        page.pack_start(self._buttons(self.continue_button), False, False, 0)
        return page

    def _fill_screen(self) -> None:
        display = Gdk.Display.get_default()
        monitor = display.get_primary_monitor() or display.get_monitor(0)
        geometry = monitor.get_geometry()
        self.window.set_default_size(geometry.width, geometry.height)
        self.window.move(geometry.x, geometry.y)

    # --- state ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Every text in the current language; the login, the step and the problem."""
        self.window.set_title(say("window_title", self.lang))
        for widget, key, values in self.texts:
            if key:
                widget.set_label(say(key, self.lang, **values))
        name = self.name.get_text()
        self.login = login_from_name(name, self.taken) if name_problem(name) is None else ""
        self.login_label.set_markup(self._with_login("login" if self.login else "login_none"))
        page = self.stack.get_visible_child_name()
        self.step.set_label(say("step", self.lang, i=PAGES.index(page) + 1)
                            if page in PAGES else "")
        self.subtitle.set_visible(page in PAGES)
        self.error.set_label(self.problem.say(self.lang) if self.problem else "")
        self.error.set_visible(self.problem is not None)
        self.done_text.set_markup(self._with_login("done"))

    def _with_login(self, key: str) -> str:
        """The text `key` as Pango markup, the login in bold."""
        before, _, after = TEXTS[key][self.lang].partition("{login}")
        bold = f"<b>{_escape(self.login)}</b>" if "{login}" in TEXTS[key][self.lang] else ""
        return _escape(before) + bold + _escape(after)

    def show_page(self, page: str) -> None:
        self.stack.set_visible_child_name(page)
        focus = {"name": self.name, "password": self.password, "session": self.create,
                 "done": self.continue_button}.get(page)
        if focus is not None:
            focus.grab_focus()
        self.refresh()
        emit(f"page {page}")

    def _on_map(self, *_: object) -> bool:
        if self.mapped:
            return False
        self.mapped = True
        self.window.get_window().focus(Gdk.CURRENT_TIME)   # no window manager gives it
        self.show_page("name")
        emit("ready")
        return False

    def _on_switch(self, *_: object) -> None:
        self.lang = "en" if self.lang == "fr" else "fr"
        self.refresh()
        emit(f"lang {self.lang}")

    def _on_show(self, *_: object) -> None:
        for entry in (self.password, self.again):
            entry.set_visibility(self.show.get_active())

    def _on_next(self, *_: object) -> None:
        page = self.stack.get_visible_child_name()
        if page == "name":
            problem = name_problem(self.name.get_text())
        else:
            problem = password_problem(self.password.get_text(), self.again.get_text(),
                                       minimum=self.config.min_password)
        if not self._shows_problem(problem):
            self.show_page(PAGES[PAGES.index(page) + 1])

    def _on_back(self, *_: object) -> None:
        self.problem = None
        self.show_page(PAGES[PAGES.index(self.stack.get_visible_child_name()) - 1])

    def _shows_problem(self, problem: Problem | None) -> bool:
        """Show `problem` (None clears it) where it can be fixed; True if there is one."""
        self.problem = problem
        if problem is None:
            return False
        if problem.key == "name_empty":
            self.show_page("name")
        elif problem.key.startswith("password"):
            self.password.set_text("")
            self.again.set_text("")
            self.show_page("password")
        emit(f"problem {problem.key}")
        return True

    def _on_create(self, *_: object) -> None:
        problems = account_problems(self.name.get_text(), self.password.get_text(),
                                    self.again.get_text(), minimum=self.config.min_password)
        if self._shows_problem(problems[0] if problems else None):
            return
        account = Account(self.name.get_text(), self.login, self.password.get_text(),
                          autologin=self.autologin.get_active())
        self.show_page("working")
        threading.Thread(target=self._create, args=(account,), daemon=True).start()

    def _create(self, account: Account) -> None:
        try:
            create_account(account, self.root, self.config)
        except (ApplyError, OSError) as exc:
            GLib.idle_add(self._failed, str(exc))
            return
        GLib.idle_add(self._created, account.login)

    def _created(self, login: str) -> bool:
        self.show_page("done")
        emit(f"created {login}")
        return False

    def _failed(self, detail: str) -> bool:
        self.problem = Problem("failed", (("detail", detail),))
        self.show_page("session")
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
    Gtk.main()
    return 0 if window.stack.get_visible_child_name() == "done" else 1
