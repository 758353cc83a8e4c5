"""The browsers' enterprise policies of a profile: Firefox ESR and Chromium open on
the local welcome page, show the network's bookmarks, and keep quiet (no telemetry,
no studies, no first-run or "what's new" pages).

`policy_files(profile, welcome_url)` gives the files the profile's package installs;
`check_firefox(policies)` validates Firefox's against the policy schema shipped
inside firefox-esr itself (`browser/omni.ja`, a zip), so a policy the installed
Firefox does not know, or a value of the wrong type, is caught before a laptop is.

Camera and microphone are left to Firefox's and Chromium's per-site prompts: a
video call with a mediator must work out of the box, so nothing here blocks them.
"""

from __future__ import annotations

import copy
import json
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from imager.errors import ImagerError, UsageError
from imager.profile.spec import Bookmark, Browser, Profile

FIREFOX_POLICIES = PurePosixPath("/etc/firefox/policies/policies.json")
CHROMIUM_POLICIES = PurePosixPath("/etc/chromium/policies/managed")
FIREFOX_OMNI = Path("/usr/lib/firefox-esr/browser/omni.ja")
FIREFOX_SCHEMA = "modules/policies/policies-schema.json"     # inside omni.ja
RESTORE_URLS = 4        # Chromium's RestoreOnStartup: open the RestoreOnStartupURLs
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


class PolicyError(UsageError):
    """Browser policies that the browser would refuse: each problem names the policy."""


def firefox_policies(profile: Profile, welcome_url: str) -> dict[str, Any]:
    """The content of Firefox's policies.json (`{"policies": {...}}`)."""
    browser = _browser(profile)
    return {"policies": {
        "Homepage": {"URL": _url(welcome_url), "Locked": True, "StartPage": "homepage"},
        "ShowHomeButton": True,
        "OverrideFirstRunPage": "",         # "": no Mozilla first-run page
        "OverridePostUpdatePage": "",       # "": no "what's new" page after an update
        "ManagedBookmarks": managed_bookmarks(browser, welcome_url),
        "DisplayBookmarksToolbar": "always",
        "NoDefaultBookmarks": True,
        "DisableTelemetry": True,
        "DisableFirefoxStudies": True,
        "DontCheckDefaultBrowser": True,
        "DisableProfileImport": True,       # a new machine: nothing to import
        "RequestedLocales": [bcp47(profile.locale)],
        "UserMessaging": {"WhatsNew": False, "ExtensionRecommendations": False,
                          "FeatureRecommendations": False, "UrlbarInterventions": False,
                          "SkipOnboarding": True, "MoreFromMozilla": False,
                          "FirefoxLabs": False},
        "FirefoxHome": {"SponsoredTopSites": False, "SponsoredPocket": False,
                        "SponsoredStories": False},
        "FirefoxSuggest": {"SponsoredSuggestions": False, "ImproveSuggest": False},
    }}


def chromium_policies(profile: Profile, welcome_url: str) -> dict[str, Any]:
    """The content of Chromium's managed policy file."""
    browser = _browser(profile)
    url = _url(welcome_url)
    return {
        "HomepageLocation": url,
        "HomepageIsNewTabPage": False,
        "ShowHomeButton": True,
        "RestoreOnStartup": RESTORE_URLS,
        "RestoreOnStartupURLs": [url],
        "ManagedBookmarks": managed_bookmarks(browser, welcome_url),
        "BookmarkBarEnabled": True,
        "MetricsReportingEnabled": False,
        "UrlKeyedAnonymizedDataCollectionEnabled": False,
        "FeedbackSurveysEnabled": False,
        "DefaultBrowserSettingEnabled": False,
        "PromotionalTabsEnabled": False,
        "SpellcheckEnabled": True,
        "SpellcheckLanguage": [profile.locale.split("_")[0]],
    }


def chromium_policies_path(profile: Profile) -> PurePosixPath:
    """Where the profile's Chromium policies go (one file per package, no clash)."""
    return CHROMIUM_POLICIES / f"{profile.network.package}.json"


def policy_files(profile: Profile, welcome_url: str) -> dict[PurePosixPath, bytes]:
    """The files the profile's package installs: absolute path in the system -> content
    (UTF-8 JSON, keys sorted, so the same profile gives the same bytes)."""
    return {FIREFOX_POLICIES: to_json(firefox_policies(profile, welcome_url)),
            chromium_policies_path(profile): to_json(chromium_policies(profile, welcome_url))}


def managed_bookmarks(browser: Browser, welcome_url: str) -> list[dict[str, Any]]:
    """ManagedBookmarks, the format both browsers read: the toolbar folder's name,
    then the welcome page (if the profile names it) and the profile's bookmarks."""
    items: list[dict[str, Any]] = [{"toplevel_name": browser.folder}]
    if browser.welcome_bookmark:
        items.append({"name": browser.welcome_bookmark, "url": _url(welcome_url)})
    return items + [_managed(b) for b in browser.bookmarks]


def _managed(b: Bookmark) -> dict[str, Any]:
    if b.is_folder:
        return {"name": b.title, "children": [_managed(c) for c in b.children]}
    return {"name": b.title, "url": b.url}


def bcp47(locale: str) -> str:
    """fr_FR.UTF-8 -> fr-FR."""
    return locale.split(".")[0].replace("_", "-")


def to_json(data: Any) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _browser(profile: Profile) -> Browser:
    if profile.browser is None:
        raise UsageError(f"profile {profile.name} has no browser (desktop: "
                         f"{profile.desktop}): there are no browser policies to write")
    return profile.browser


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("file", "http", "https") or not (parts.netloc or parts.path):
        raise UsageError(f"the welcome page's address {value!r} is not a full URL: give "
                         "e.g. file:///usr/share/<package>/index.html")
    return value


# --- Firefox's own schema --------------------------------------------------------------

def firefox_schema(omni: Path = FIREFOX_OMNI) -> dict[str, Any]:
    """The policy schema shipped inside firefox-esr (give the omni.ja of an image's
    root to check against the Firefox of that image)."""
    try:
        with zipfile.ZipFile(omni) as jar:
            schema: dict[str, Any] = json.loads(jar.read(FIREFOX_SCHEMA))
    except FileNotFoundError as exc:
        raise ImagerError(f"{omni} does not exist: install firefox-esr (apt-get install "
                          "firefox-esr); its omni.ja holds the policy schema") from exc
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise ImagerError(f"cannot read the policy schema {FIREFOX_SCHEMA} in {omni}: {exc}"
                          " (a firefox-esr whose layout changed? look for *policies*schema* "
                          "with `unzip -l`)") from exc
    return schema


def firefox_problems(policies: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every problem of a policies.json content against Firefox's schema; an unknown
    policy or key (a typo Firefox would ignore) is a problem too."""
    if set(policies) != {"policies"} or not isinstance(policies["policies"], Mapping):
        return ['policies.json: expected {"policies": {...}} and nothing else']
    validator = jsonschema.Draft7Validator(_closed(schema), format_checker=_FORMATS)
    errors = sorted(validator.iter_errors(policies["policies"]), key=lambda e: list(e.path))
    return [f"{_where(e.path)}: {e.message}" for e in errors]


def _where(path: Iterable[str | int]) -> str:
    """policies.ManagedBookmarks[1].url"""
    return "policies" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def check_firefox(policies: Mapping[str, Any], omni: Path = FIREFOX_OMNI) -> None:
    """Raise PolicyError listing every problem of `policies` for the Firefox at `omni`."""
    problems = firefox_problems(policies, firefox_schema(omni))
    if problems:
        raise PolicyError(f"the Firefox policies do not fit {omni} ({len(problems)} "
                          "problem(s)):\n  - " + "\n  - ".join(problems))


def _closed(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with `additionalProperties: false` wherever it lists properties and
    says nothing of others: Firefox would only log an unknown one and go on."""
    closed = copy.deepcopy(dict(schema))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and not {"additionalProperties",
                                              "patternProperties"} & set(node):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(closed)
    return closed


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("moz-url")
def _moz_url(value: object) -> bool:
    """What Firefox's URL parser accepts, near enough: a scheme, and a host for web
    addresses."""
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(_SCHEME.fullmatch(parts.scheme)) and (
        parts.scheme not in ("http", "https") or bool(parts.netloc))
