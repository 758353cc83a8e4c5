"""OS profiles (profiles/<name>/profile.yaml): the shipped ones are valid; a bad one is
refused with EVERY problem at once, each with its file:line, key path and fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imager.errors import UsageError
from imager.profile import spec
from imager.profile.buildspec import BuildSpec
from imager.profile.spec import ProfileError

SHIPPED = spec.PROFILES / "bureau-solidaire" / "profile.yaml"


def edited(tmp_path: Path, *edits: tuple[str, str], base: Path = SHIPPED,
           name: str = "bureau-solidaire") -> Path:
    """A copy of a shipped profile in tmp_path/<name>/ (with a welcome folder of its
    own), each (old, new) edit applied once."""
    text = base.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"{old!r} must occur once in {base}"
        text = text.replace(old, new)
    folder = tmp_path / name
    (folder / "welcome").mkdir(parents=True)
    (folder / "profile.yaml").write_text(text, encoding="utf-8")
    return folder / "profile.yaml"


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ProfileError) as caught:
        spec.load(path)
    return caught.value.problems


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [i for i, line in enumerate(lines, 1) if needle in line]
    assert len(found) == 1, f"{needle!r} must be on exactly one line of {path}"
    return found[0]


def one(problems: list[str], place: str) -> str:
    """The single problem whose place (`file:line key.path`) ends with `place`."""
    hits = [p for p in problems if re.search(rf":\d+ {re.escape(place)}: ", p)]
    assert len(hits) == 1, f"expected one problem at {place}, got {hits} among {problems}"
    return hits[0]


# --- the shipped profiles ------------------------------------------------------------

def test_shipped_profiles_are_valid() -> None:
    assert spec.names() == ["bureau-solidaire", "lab"]
    for name, loaded in spec.load_all():
        assert isinstance(loaded, spec.Profile), f"{name}: {loaded}"


def test_bureau_solidaire_is_the_french_desktop_with_its_firmware() -> None:
    p = spec.load("bureau-solidaire")
    assert (p.desktop, p.locale, p.keyboard.layout, p.timezone) == (
        "xfce", "fr_FR.UTF-8", "fr", "Europe/Paris")
    assert p.debian.suite == "trixie"
    assert "non-free-firmware" in p.debian.components
    assert set(spec.FIRMWARE) <= set(p.all_packages)
    wanted = {"lightdm", "xfce4", "firefox-esr", "firefox-esr-l10n-fr", "libreoffice-writer",
              "libreoffice-calc", "libreoffice-impress", "libreoffice-l10n-fr", "hunspell-fr",
              "cups", "ipp-usb", "sane-airscan", "orca", "pipewire", "keyboard-configuration",
              "locales"}
    assert wanted <= set(p.all_packages)
    assert p.network.package == "rsn05-accueil"
    assert p.first_boot.account == "ask" and p.first_boot.hostname == "asset-tag"
    assert p.browser is not None and p.browser.bookmarks
    assert p.welcome == (SHIPPED.parent / "welcome").resolve()


def test_lab_is_the_same_pipeline_without_a_desktop() -> None:
    lab, desk = spec.load("lab"), spec.load("bureau-solidaire")
    assert (lab.locale, lab.keyboard, lab.timezone, lab.debian.suite) == (
        desk.locale, desk.keyboard, desk.timezone, desk.debian.suite)
    assert lab.desktop == "none" and lab.browser is None and lab.welcome is None
    assert not {"xserver-xorg", "firefox-esr", "xfce4", "lightdm"} & set(lab.all_packages)
    assert len(lab.all_packages) < 10
    assert lab.disk_bytes < desk.disk_bytes


def test_build_spec_carries_the_profile() -> None:
    p = spec.load("bureau-solidaire")
    deb = Path("/tmp/rsn05-accueil_2026.12.1_all.deb")
    built = p.build_spec(local_debs=[deb])
    assert isinstance(built, BuildSpec)
    assert (built.name, built.version, built.suite, built.locale, built.keyboard_layout,
            built.keyboard_variant, built.timezone, built.disk_gib) == (
        "bureau-solidaire", p.version, "trixie", "fr_FR.UTF-8", "fr", "", "Europe/Paris", 8.0)
    assert built.components == ("main", "non-free-firmware")
    assert built.packages == p.all_packages
    assert built.hostname == "poste" and built.local_debs == (deb,)


def test_extra_packages_are_pinned_in_the_build(tmp_path: Path) -> None:
    path = edited(tmp_path, ("extra_packages: []", "extra_packages:\n"
                             "  - name: aide-a-distance\n    version: \"1.10-1\"\n"
                             "    why: the remote-help client (issue 17)\n"))
    p = spec.load(path)
    assert p.extra_packages == (spec.ExtraPackage("aide-a-distance", "1.10-1",
                                                  "the remote-help client (issue 17)"),)
    assert p.build_spec().packages[-1] == "aide-a-distance=1.10-1"


def test_to_dict_is_shaped_like_the_file() -> None:
    d = spec.load("bureau-solidaire").to_dict()
    assert d["network"]["package"] == "rsn05-accueil"
    assert d["packages"]["firmware"][1] == "firmware-iwlwifi"
    assert d["image"] == {"disk": "8 GiB"} and d["welcome"] == "welcome"
    assert d["browser"]["bookmarks"][1]["bookmarks"][0]["title"] == "Service-Public.fr"


# --- bad profiles: every problem, its place and its fix ----------------------------------

def test_every_bad_field_is_named_with_its_place_and_fix(tmp_path: Path) -> None:
    path = edited(
        tmp_path,
        ('version: "2026.12.1"', "version: 2026.10"),
        ("  slug: rsn05 ", "  slug: RSN_05 "),
        ("  suite: trixie", "  suite: stable"),
        ("    - xfce4-terminal", "    - Xfce4-Terminal"),
        ("    - mousepad", "    - locales  # again"),
        ("locale: fr_FR.UTF-8", "locale: fr_FR"),
        ("timezone: Europe/Paris", "timezone: Europe/Pari"),
        ("      url: https://www.caf.fr/", "      url: www.caf.fr"),
        ("  hostname: asset-tag ", "  hostname: asset "),
        ("  disk: 8 GiB", "  disk: 8 pouces"),
    )
    problems = problems_of(path)
    assert len(problems) == 10, problems
    shown = str(path)

    def at(needle: str, place: str) -> str:
        problem = one(problems, place)
        assert problem.startswith(f"{shown}:{line_of(path, needle)} {place}: "), problem
        return problem

    assert 'write it in quotes: "2026.10"' in at("version: 2026.10", "version")
    assert "<slug>-accueil" in at("slug: RSN_05", "network.slug")
    assert "a codename" in at("suite: stable", "debian.suite")
    assert "apt-cache policy" in at("- Xfce4-Terminal", "packages.desktop[5]")
    assert "already listed at line" in at("locales  # again", "packages.applications[12]")
    assert "fr_FR.UTF-8" in at("locale: fr_FR", "locale")
    assert "did you mean 'Europe/Paris'?" in at("timezone: Europe/Pari", "timezone")
    assert "e.g. https://" in at("url: www.caf.fr", "browser.bookmarks[1].bookmarks[3].url")
    assert "did you mean 'asset-tag'?" in at("hostname: asset ", "first_boot.hostname")
    assert "such as 8 GiB" in at("disk: 8 pouces", "image.disk")


def test_the_error_lists_every_problem_in_its_message(tmp_path: Path) -> None:
    path = edited(tmp_path, ("locale: fr_FR.UTF-8", "locale: fr_FR"),
                  ("timezone: Europe/Paris", "timezone: Mars/Olympus"))
    with pytest.raises(UsageError) as caught:     # a UsageError: the CLI says "fix the input"
        spec.load(path)
    message = str(caught.value)
    assert "2 problème(s) / problem(s)" in message
    assert f"{path}:{line_of(path, 'locale:')} locale:" in message
    assert f"{path}:{line_of(path, 'timezone:')} timezone:" in message


def test_unknown_keys_are_refused_with_the_nearest_known_key(tmp_path: Path) -> None:
    path = edited(tmp_path, ("packages:\n", "pakages: {}\npackages:\n"),
                  ("  variant: \"\"", "  varient: oss"),
                  ("  printing:", "  printer:"),
                  ("    - title: Pix\n", "    - tittle: Pix\n"),
                  ("first_boot:\n", "first_boot:\n  colour: blue\n"))
    problems = problems_of(path)
    assert "did you mean 'packages'?" in one(problems, "pakages")
    assert "did you mean 'variant'?" in one(problems, "keyboard.varient")
    assert "did you mean 'printing'?" in one(problems, "packages.printer")
    assert "did you mean 'title'?" in one(problems, "browser.bookmarks[2].bookmarks[1].tittle")
    colour = one(problems, "first_boot.colour")
    assert "remove it" in colour and "allowed here: account, hostname" in colour
    assert f":{line_of(path, 'varient')} keyboard.varient" in one(problems, "keyboard.varient")


def test_a_desktop_without_non_free_firmware_says_why(tmp_path: Path) -> None:
    path = edited(tmp_path, ("components: [main, non-free-firmware]", "components: [main]"))
    problem = one(problems_of(path), "debian.components")
    assert f":{line_of(path, 'components: [main]')} debian.components: " in problem
    for why in ("non-free-firmware is missing: add it", "Wi-Fi", "iwlwifi", "realtek",
                "atheros", "brcm", "sound", "sof", "microcode"):
        assert why in problem


def test_a_desktop_without_its_firmware_packages_names_them(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    - firmware-iwlwifi          # Intel Wi-Fi\n", ""),
                  ("    - amd64-microcode\n", ""))
    problem = one(problems_of(path), "packages.firmware")
    assert "firmware-iwlwifi (Intel Wi-Fi)" in problem and "amd64-microcode" in problem


def test_a_desktop_needs_its_parts(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    - lightdm\n", ""),
                  ("    - firefox-esr               #", "    - chromium               #"),
                  ("  account: ask ", "  account: none "),
                  ("welcome: welcome ", "#welcome: welcome "))
    problems = problems_of(path)
    assert "needs lightdm" in one(problems, "packages.desktop")
    assert "firefox-esr is missing" in one(problems, "packages.applications")
    assert "own account and password" in one(problems, "first_boot.account")
    assert "welcome-content folder" in one(problems, "welcome")


def test_a_browser_needs_a_desktop(tmp_path: Path) -> None:
    path = edited(tmp_path, ("desktop: none", "desktop: none\nbrowser: {bookmarks: []}"),
                  base=spec.PROFILES / "lab" / "profile.yaml", name="lab")
    assert "set desktop: xfce" in one(problems_of(path), "browser")


def test_the_welcome_folder_must_exist(tmp_path: Path) -> None:
    path = edited(tmp_path, ("welcome: welcome ", "welcome: accueil "))
    problem = one(problems_of(path), "welcome")
    assert str(path.parent / "accueil") in problem and "does not exist" in problem
    absolute = edited(tmp_path / "b", ("welcome: welcome ", f"welcome: {tmp_path} "))
    assert "relative to" in one(problems_of(absolute), "welcome")


def test_extra_packages_need_name_version_and_why(tmp_path: Path) -> None:
    path = edited(tmp_path, ("extra_packages: []", "extra_packages:\n"
                             "  - {name: orca, version: 1.10}\n"))
    problems = problems_of(path)
    assert "missing: add `why:`" in one(problems, "extra_packages[0].why")
    assert "already installed" in one(problems, "extra_packages[0].name")
    assert 'quotes: "1.10"' in one(problems, "extra_packages[0].version")


def test_missing_required_keys_are_each_named(tmp_path: Path) -> None:
    folder = tmp_path / "vide"
    folder.mkdir()
    (folder / "profile.yaml").write_text("name: vide\n", encoding="utf-8")
    problems = problems_of(folder)
    for key in ("title", "version", "network", "packages", "locale", "keyboard", "timezone",
                "desktop", "first_boot", "image"):
        assert "missing: add" in one(problems, key)


def test_a_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = edited(tmp_path, ("timezone: Europe/Paris", "timezone: Europe/Paris\n"
                                                       "timezone: Europe/Brussels"))
    problem = one(problems_of(path), "timezone")
    assert "appears twice" in problem and f":{line_of(path, 'Brussels')} " in problem


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = edited(tmp_path, ("  layout: fr ", "  layout: [fr "))
    (problem,) = problems_of(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: not valid YAML", problem)


def test_the_name_matches_the_folder(tmp_path: Path) -> None:
    path = edited(tmp_path, name="autre")
    assert "differs from the profile's folder 'autre'" in one(problems_of(path), "name")


def test_an_unknown_profile_name_suggests_the_nearest() -> None:
    with pytest.raises(ProfileError) as caught:
        spec.load("bureau-solidair")
    assert "did you mean 'bureau-solidaire'?" in str(caught.value)
    assert "bureau-solidaire, lab" in str(caught.value)


def test_an_empty_list_item_is_named(tmp_path: Path) -> None:
    path = edited(tmp_path, ("    - sudo\n", "    -\n"),
                  ("        - title: CAF\n          url: https://www.caf.fr/\n", "        -\n"))
    problems = problems_of(path)
    assert "an empty item" in one(problems, "packages.base[4]")
    assert "an empty item" in one(problems, "browser.bookmarks[1].bookmarks[3]")
