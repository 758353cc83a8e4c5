"""Browser policies of a profile: Firefox ESR's checked against the policy schema
shipped inside the installed firefox-esr (omni.ja), Chromium's names against the
installed chromium; the homepage is the welcome page, the bookmarks managed, the
webcam left working."""

from __future__ import annotations

import json
import mmap
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from conftest import need

from imager.errors import ImagerError, UsageError
from imager.profile import browser, spec

WELCOME = "file:///usr/share/rsn05-accueil/index.html"
CHROMIUM = Path("/usr/lib/chromium/chromium")
DESK = spec.load("bureau-solidaire")


def installed_firefox_schema() -> dict[str, Any]:
    need(browser.FIREFOX_OMNI.exists(), f"needs firefox-esr ({browser.FIREFOX_OMNI}); "
                                        "scripts/install --test installs it")
    return browser.firefox_schema()


def test_firefox_policies_fit_the_installed_firefox_esr_schema() -> None:
    schema = installed_firefox_schema()
    policies = browser.firefox_policies(DESK, WELCOME)
    assert browser.firefox_problems(policies, schema) == []
    browser.check_firefox(policies)     # the same, raising: nothing to raise


def test_the_schema_check_catches_what_firefox_would_ignore_or_refuse() -> None:
    schema = installed_firefox_schema()
    policies = browser.firefox_policies(DESK, WELCOME)
    bad = policies["policies"]
    bad["Homepage"]["Url"] = bad["Homepage"].pop("URL")          # a typo'd key
    bad["DisableTelemetry"] = "yes"                               # a wrong type
    bad["ManagedBookmarks"][2]["link"] = "https://example.org/"   # an unknown key
    bad["BookmarksOnTheToolbar"] = True                           # no such policy
    problems = browser.firefox_problems(policies, schema)
    assert any(p.startswith("policies: ") and "'BookmarksOnTheToolbar'" in p
               for p in problems), problems
    assert any(p.startswith("policies.Homepage: ") and "'Url'" in p for p in problems)
    assert any(p.startswith("policies.DisableTelemetry: ") and "boolean" in p
               for p in problems)
    assert any(p.startswith("policies.ManagedBookmarks[2]: ") for p in problems)
    with pytest.raises(browser.PolicyError, match=r"4 problem\(s\)"):
        browser.check_firefox(policies)


def test_firefox_opens_on_the_welcome_page_with_managed_bookmarks() -> None:
    p = browser.firefox_policies(DESK, WELCOME)["policies"]
    assert p["Homepage"] == {"URL": WELCOME, "Locked": True, "StartPage": "homepage"}
    assert "Bookmarks" not in p     # it would add the bookmarks again at each start
    assert p["ManagedBookmarks"][:2] == [
        {"toplevel_name": "Réseau solidaire"},
        {"name": "Prendre en main mon matériel", "url": WELCOME}]
    folder = p["ManagedBookmarks"][3]
    assert folder["name"] == "Démarches en ligne"
    assert folder["children"][0] == {"name": "Service-Public.fr",
                                     "url": "https://www.service-public.fr/"}
    assert p["DisplayBookmarksToolbar"] == "always" and p["NoDefaultBookmarks"] is True
    assert p["OverrideFirstRunPage"] == "" and p["OverridePostUpdatePage"] == ""
    assert p["DisableTelemetry"] is True and p["DisableFirefoxStudies"] is True
    assert p["RequestedLocales"] == ["fr-FR"]


def test_the_webcam_and_microphone_are_not_blocked() -> None:
    firefox = browser.firefox_policies(DESK, WELCOME)["policies"]
    chromium = browser.chromium_policies(DESK, WELCOME)
    assert "Permissions" not in firefox and "Preferences" not in firefox
    assert "VideoCaptureAllowed" not in chromium and "AudioCaptureAllowed" not in chromium
    text = json.dumps([firefox, chromium]).lower()
    assert "camera" not in text and "media.navigator" not in text


def test_chromium_opens_on_the_welcome_page_with_the_same_bookmarks() -> None:
    c = browser.chromium_policies(DESK, WELCOME)
    assert c["HomepageLocation"] == WELCOME and c["HomepageIsNewTabPage"] is False
    assert c["RestoreOnStartup"] == 4 and c["RestoreOnStartupURLs"] == [WELCOME]
    assert c["ManagedBookmarks"] == browser.firefox_policies(DESK, WELCOME)[
        "policies"]["ManagedBookmarks"]
    assert c["BookmarkBarEnabled"] is True and c["MetricsReportingEnabled"] is False
    assert c["SpellcheckLanguage"] == ["fr"]


def test_every_chromium_policy_is_known_to_the_installed_chromium() -> None:
    """Chromium keeps its policy names in its binary; a name it does not know (a typo,
    a Windows-only policy) would be ignored on the laptops."""
    need(CHROMIUM.exists(), f"needs chromium ({CHROMIUM}); scripts/install --test installs it")
    with CHROMIUM.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        unknown = [name for name in browser.chromium_policies(DESK, WELCOME)
                   if data.find(name.encode() + b"\0") < 0]
        assert data.find(b"ApplicationLocaleValue\0") < 0   # Windows only: the check bites
    assert unknown == []


def test_policy_files_are_where_the_browsers_read_them() -> None:
    files = browser.policy_files(DESK, WELCOME)
    assert set(files) == {PurePosixPath("/etc/firefox/policies/policies.json"),
                          PurePosixPath("/etc/chromium/policies/managed/rsn05-accueil.json")}
    firefox = json.loads(files[browser.FIREFOX_POLICIES])
    assert firefox == browser.firefox_policies(DESK, WELCOME)
    assert files == browser.policy_files(spec.load("bureau-solidaire"), WELCOME)
    assert "Réseau solidaire" in files[browser.FIREFOX_POLICIES].decode("utf-8")


def test_a_profile_without_desktop_has_no_browser_policies() -> None:
    with pytest.raises(UsageError, match="has no browser"):
        browser.policy_files(spec.load("lab"), WELCOME)


def test_the_welcome_page_address_must_be_a_full_url() -> None:
    with pytest.raises(UsageError, match="not a full URL"):
        browser.firefox_policies(DESK, "index.html")


def test_a_missing_or_odd_firefox_is_named(tmp_path: Path) -> None:
    with pytest.raises(ImagerError, match="install firefox-esr"):
        browser.firefox_schema(tmp_path / "omni.ja")
    with zipfile.ZipFile(tmp_path / "odd.ja", "w") as jar:
        jar.writestr("modules/other.json", "{}")
    with pytest.raises(ImagerError, match="policies-schema.json"):
        browser.firefox_schema(tmp_path / "odd.ja")
