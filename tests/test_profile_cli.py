"""`imager profile list|show|check|diff|welcome` run as the real command, and the pure diff
underneath `diff` (which the image build reuses for two builds' manifests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clirun import imager

from imager.profile import spec
from imager.profile.diff import Change, describe, diff, diff_profiles

LAB = spec.PROFILES / "lab"


def copy_of(tmp_path: Path, name: str, *edits: tuple[str, str]) -> Path:
    """A profiles folder holding a copy of the shipped profile `name`, edited."""
    folder = tmp_path / "profiles" / name
    shutil.copytree(spec.PROFILES / name, folder)
    text = (folder / "profile.yaml").read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    (folder / "profile.yaml").write_text(text, encoding="utf-8")
    return folder


def test_list_shows_each_profile(tmp_path: Path) -> None:
    out = imager(tmp_path, "profile", "list").stdout
    assert "Profils / Profiles" in out
    for p in (spec.load("lab"), spec.load("bureau-solidaire")):
        row = next(line for line in out.splitlines() if f" {p.name} " in line)
        assert p.version in row and "trixie" in row and p.title in row
    rows = json.loads(imager(tmp_path, "profile", "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["bureau-solidaire", "lab"]
    assert all(r["valid"] for r in rows)


def test_list_marks_a_broken_profile_without_failing(tmp_path: Path) -> None:
    copy_of(tmp_path, "lab", ("locale: fr_FR.UTF-8", "locale: fr_FR"))
    proc = imager(tmp_path, "profile", "list", "--profiles", str(tmp_path / "profiles"))
    assert "invalide / invalid: 1 problème(s)" in proc.stdout
    assert "imager profile check lab" in proc.stdout


def test_show_prints_the_resolved_profile(tmp_path: Path) -> None:
    out = imager(tmp_path, "profile", "show", "bureau-solidaire").stdout
    for expected in ("Profil / profile bureau-solidaire 2026.12.1",
                     "paquet / package rsn05-accueil", "trixie (main, non-free-firmware)",
                     "fr_FR.UTF-8", "Europe/Paris", "firmware (10): firmware-linux-free, "
                     "firmware-iwlwifi", "Prendre en main mon matériel → page d'accueil "
                     "locale", "Service-Public.fr → https://www.service-public.fr/",
                     "la personne crée son compte", "disque / disk 8 GiB"):
        assert expected in out, expected


def test_show_json_is_the_profile_as_data(tmp_path: Path) -> None:
    shown = json.loads(imager(tmp_path, "profile", "show", "lab", "--json").stdout)
    assert shown == json.loads(json.dumps(spec.load("lab").to_dict()))


def test_check_says_ok_for_a_good_profile(tmp_path: Path) -> None:
    by_name = imager(tmp_path, "profile", "check", "lab")
    assert by_name.stdout.startswith("ok — profil / profile lab ")
    assert imager(tmp_path, "profile", "check", str(LAB / "profile.yaml")).returncode == 0
    assert imager(tmp_path, "profile", "check", str(LAB)).returncode == 0


def test_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    folder = copy_of(tmp_path, "lab", ("locale: fr_FR.UTF-8", "locale: fr_FR"),
                     ("timezone: Europe/Paris", "timezone: Europe/Pari"))
    proc = imager(tmp_path, "profile", "check", str(folder), check=False)
    assert proc.returncode == 1, proc
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Profil à corriger / profile to fix:")
    assert "2 problème(s)" in lines[0]
    assert any(" locale: " in line and "fr_FR.UTF-8" in line for line in lines[1:])
    assert any("did you mean 'Europe/Paris'?" in line for line in lines[1:])


def test_an_unknown_profile_is_a_usage_error(tmp_path: Path) -> None:
    proc = imager(tmp_path, "profile", "show", "bureau", check=False)
    assert proc.returncode == 2
    assert "no profile named 'bureau'" in proc.stderr and "bureau-solidaire" in proc.stderr


def test_welcome_preview_renders_the_page_of_a_profile(tmp_path: Path) -> None:
    out = tmp_path / "page"
    proc = imager(tmp_path, "profile", "welcome", "bureau-solidaire", "--preview", "--out",
                  str(out), "--today", "2026-12-06")
    assert proc.stdout == f"{out / 'index.html'}\n"
    assert f"ouvrir / open: {(out / 'index.html').as_uri()}" in proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "Prendre en main mon matériel" in page and (out / "en.html").is_file()


def test_welcome_preview_finds_the_profile_in_profiles_or_says_the_nearest(
        tmp_path: Path) -> None:
    folder = copy_of(tmp_path, "bureau-solidaire", ("name: bureau-solidaire", "name: accueil"))
    shutil.move(folder, tmp_path / "profiles" / "accueil")
    out = tmp_path / "page"
    imager(tmp_path, "profile", "welcome", "accueil", "--preview", "--out", str(out),
           "--profiles", str(tmp_path / "profiles"))
    assert (out / "index.html").is_file()
    lab = imager(tmp_path, "profile", "welcome", "lab", "--preview", check=False)
    assert lab.returncode == 2 and "no welcome page" in lab.stderr
    proc = imager(tmp_path, "profile", "welcome", "bureau-solidair", "--preview", check=False)
    assert proc.returncode == 2
    assert "did you mean 'bureau-solidaire'?" in proc.stderr and not proc.stdout


def test_diff_of_a_profile_with_itself_is_empty(tmp_path: Path) -> None:
    copy_of(tmp_path, "lab", ("# Profil « lab »", "# Même profil, autre commentaire"))
    proc = imager(tmp_path, "profile", "diff", "lab", str(tmp_path / "profiles" / "lab"))
    assert proc.stdout.startswith("Aucune différence / no difference: lab 2026.12.1")


def test_diff_names_each_changed_field(tmp_path: Path) -> None:
    folder = copy_of(tmp_path, "lab", ('version: "2026.12.1"', 'version: "2026.12.2"'),
                     ("    - ca-certificates\n", "    - ca-certificates\n    - less\n"),
                     ("    - tzdata\n", ""), ("  disk: 2 GiB", "  disk: 3 GiB"))
    proc = imager(tmp_path, "profile", "diff", "lab", str(folder), check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == "4 différence(s) / difference(s): lab 2026.12.1 → lab 2026.12.2"
    assert lines[1:] == ['  ~ version: "2026.12.1" → "2026.12.2"', "  - packages.base: tzdata",
                         "  + packages.base: less", '  ~ image.disk: "2 GiB" → "3 GiB"']
    changes = json.loads(imager(tmp_path, "profile", "diff", "lab", str(folder), "--json",
                                check=False).stdout)
    assert changes[0] == {"path": "version", "kind": "changed", "before": "2026.12.1",
                          "after": "2026.12.2"}


# --- the pure diff -------------------------------------------------------------------

def test_diff_walks_mappings_and_lists_of_mappings() -> None:
    before = {"a": 1, "b": {"c": "x", "gone": True}, "items": [{"n": 1}, {"n": 2}]}
    after = {"a": 1, "b": {"c": "y", "new": [1]}, "items": [{"n": 1}, {"n": 3}, {"n": 4}],
             "z": None}
    assert diff(before, after) == [
        Change("b.c", "changed", "x", "y"), Change("b.gone", "removed", before=True),
        Change("b.new", "added", after=[1]), Change("items[1].n", "changed", 2, 3),
        Change("items[2]", "added", after={"n": 4}), Change("z", "added", after=None)]


def test_diff_compares_plain_lists_as_sets_then_order() -> None:
    assert diff(["a", "b", "c"], ["c", "d", "a"], path="p") == [
        Change("p", "removed", before=["b"]), Change("p", "added", after=["d"])]
    assert diff(["a", "b"], ["b", "a"], path="p") == [
        Change("p", "reordered", ["a", "b"], ["b", "a"])]
    assert diff(("a", "b"), ["a", "b"]) == []


def test_diff_skips_what_it_is_told_to_ignore() -> None:
    assert diff({"source": "/a", "x": {"digest": 1}}, {"source": "/b", "x": {"digest": 2}},
                ignore=("source", "x.digest")) == []


def test_describe_is_one_readable_line() -> None:
    assert describe(Change("packages.base", "added", after=["less", "vim"])) == \
        "+ packages.base: less, vim"
    assert describe(Change("browser", "changed", None, {"folder": "Réseau"})) == \
        '~ browser: null → {"folder": "Réseau"}'
    assert describe(Change("l", "reordered", ["a", "b"], ["b", "a"])) == \
        '↕ l: ["a", "b"] → ["b", "a"]'


def test_two_shipped_profiles_differ_where_the_desktop_is() -> None:
    paths = {c.path for c in diff_profiles(spec.load("lab"), spec.load("bureau-solidaire"))}
    assert {"name", "desktop", "browser", "welcome", "debian.components",
            "packages.firmware", "first_boot.account", "image.disk"} <= paths
    assert not {"locale", "timezone", "keyboard.layout", "debian.suite", "source",
                "digest", "welcome_path"} & paths


def test_diff_of_two_builds_names_the_packages_that_changed(tmp_path: Path) -> None:
    """`imager profile diff` of two build manifests (as `imager profile build` writes
    them): empty for the same build, a package's new version named otherwise."""
    build = {"profile": "lab", "profile_version": "2026.12.1", "root_tar_sha256": "a" * 64,
             "packages": [{"name": "tzdata", "arch": "all", "version": "2025b-4",
                           "sha256": "1" * 64}]}
    newer = {**build, "root_tar_sha256": "b" * 64, "packages": [
        {"name": "tzdata", "arch": "all", "version": "2025b-5", "sha256": "2" * 64}]}
    for name, data in (("a.json", {"os_build": build}), ("b.json", build),
                       ("c.json", newer)):
        (tmp_path / name).write_text(json.dumps(data))
    same = imager(tmp_path, "profile", "diff", str(tmp_path / "a.json"),
                  str(tmp_path / "b.json"))
    assert same.stdout.startswith("Aucune différence / no difference")
    moved = imager(tmp_path, "profile", "diff", str(tmp_path / "b.json"),
                   str(tmp_path / "c.json"), check=False)
    assert moved.returncode == 1 and "~ tzdata:all 2025b-4 -> 2025b-5" in moved.stdout
