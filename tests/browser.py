"""The station's pages in a real browser: Debian's `chromium` package driven by
Playwright for Python (no browser download: scripts/install --test installs
both), axe-core for accessibility, screenshots, and the accounts the tests sign
in with.

The `browser` and `page` fixtures (tests/conftest.py) use `chromium` and
`new_page`; a test module that uses `page` gives the station's address as its
`web_url` fixture. Without chromium or Playwright a test skips, or fails under
CI=true (conftest.need)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import need, need_tool

from imager.registry import accounts
from imager.settings import Settings
from imager.store.db import Registry

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize
    from station_proc import Serve

# As root (the tests, CI) chromium cannot use its own sandbox.
CHROMIUM_ARGS = ["--no-sandbox"]
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
TABLET: ViewportSize = {"width": 1024, "height": 768}
TIMEOUT_MS = 15_000
PASSWORD = "correct horse battery"
SERIOUS = ("serious", "critical")


def need_browser() -> str:
    """Debian's chromium (its path), once Playwright and axe-core for Python are
    installed: the test skips otherwise, or fails under CI=true."""
    for module, package in (("playwright", "playwright"),
                            ("axe_playwright_python", "axe-playwright-python")):
        need(importlib.util.find_spec(module) is not None,
             f"needs the Python package {package}: pip install -e '.[test]' "
             f"(scripts/install --test)")
    return need_tool("chromium")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, driven by Playwright."""
    path = need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Browser, base_url: str, viewport: ViewportSize = LAPTOP
             ) -> Iterator[Page]:
    """A page in a fresh context of `browser` (no cookies), relative URLs on `base_url`."""
    context = browser.new_context(base_url=base_url, viewport=viewport, locale="fr-FR")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- accounts ---------------------------------------------------------------------------


def setup_link(station: Serve) -> str:
    """The first coordinator's one-time setup link, as the station printed it on its
    console at start (imager.cli.compose._say_setup_link)."""
    return station.console(r"(https?://\S+/setup\?token=[\w-]+)").group(1)


def add_user(data: Path, login: str, role: str = "technician", pin: str | None = None,
             level: int = 1) -> str:
    """A user made directly in the registry of the station whose data dir is
    `data` (its SQLite file, while it runs; the coordinator's page is tested on its
    own). Their password is PASSWORD; returns their full name."""
    with Registry.open(Settings(data_dir=data)) as registry, registry.session() as s:
        user = accounts.create_user(s, login=login, name=f"{login.title()} Martin", role=role,
                                    password=PASSWORD, by="tests (registry)", pin=pin,
                                    level=level)
        name: str = user.name
    return name


def sign_in(page: Page, login: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in page, as a person would (French page)."""
    page.goto("/login")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(password)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_load_state()


def form_token(page: Page) -> str:
    """The form token (CSRF) of the page's first form that carries one."""
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    assert token, f"{page.url}: no form token"
    return token


# -- accessibility and screenshots ---------------------------------------------------------


def serious_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    found: list[dict[str, Any]] = Axe().run(page).response["violations"]
    return [v for v in found if v["impact"] in SERIOUS]


def describe(where: str, violations: list[dict[str, Any]]) -> str:
    """The violations, one paragraph each: rule, impact, help, and every element."""
    lines = []
    for v in violations:
        lines.append(f"{where}: {v['id']} ({v['impact']}): {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            said = [ln.strip() for ln in (node.get("failureSummary") or "").splitlines()]
            summary = " ".join(said[:1] + ["; ".join(ln for ln in said[1:] if ln)])
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html']}"
                         f"\n      {summary}")
    return "\n".join(lines)


def sideways_overflow(page: Page) -> int:
    """How many pixels the page is wider than its window (0: no sideways scrolling)."""
    width: int = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    return max(width, 0)


def screenshot(page: Page, path: Path, viewport: ViewportSize = LAPTOP) -> Path:
    """A PNG of the page's first screen at `viewport` (LAPTOP 1366×768, TABLET 1024×768)."""
    page.set_viewport_size(viewport)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    return path
