"""The welcome page "Prendre en main mon matériel": the profile's content checked
(every problem with its file:line), the page rendered with its sections, the
places, the next workshops only, the phone, the build date and the message
form; well-formed HTML; axe-core in Debian's chromium; and the form, opened
from the page as a file, really reaching the laptop's local message service."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from xml.etree import ElementTree

import pytest
from browser import chromium, describe, new_page, serious_violations, sideways_overflow
from test_welcome_queue import SCRIPT, _wait_listening, free_port

from imager.cli import profile_welcome
from imager.errors import UsageError
from imager.profile.welcome import content, preview, site

PROFILE = Path(__file__).parents[1] / "profiles" / "bureau-solidaire"
TODAY = date(2026, 12, 6)
XHTML = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture(scope="module")
def loaded() -> content.WelcomeContent:
    return content.load(PROFILE / "welcome")


@pytest.fixture(scope="module")
def rendered(loaded: content.WelcomeContent, tmp_path_factory: pytest.TempPathFactory,
             ) -> Path:
    out = tmp_path_factory.mktemp("accueil")
    site.render(loaded, out, today=TODAY, message_url="http://127.0.0.1:8377/messages")
    return out


def parse(page: Path) -> ElementTree.Element:
    """The page read as XML: it fails on any element left open or badly nested."""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>\n")
    body = text.removeprefix("<!DOCTYPE html>\n").replace(
        "<html ", '<html xmlns="http://www.w3.org/1999/xhtml" ', 1)
    return ElementTree.fromstring(body)


def words(element: ElementTree.Element) -> str:
    return re.sub(r"\s+", " ", "".join(element.itertext())).strip()


# -- the content ------------------------------------------------------------------------


def test_the_shipped_content_is_valid(loaded: content.WelcomeContent) -> None:
    assert loaded.network == "Bureau solidaire des Hautes-Alpes"
    assert loaded.languages == ("fr", "en") and loaded.departements == ("05",)
    assert loaded.phone.href == "tel:+33465710000" and loaded.sample
    assert loaded.messages.local_url == "http://127.0.0.1:8377/messages"
    assert len(loaded.places.places) == 26 and loaded.warnings == ()
    assert set(loaded.pictograms) == set(content.SECTIONS)


def test_every_problem_of_welcome_yaml_is_named_with_its_line_and_fix(tmp_path: Path) -> None:
    broken = tmp_path / "welcome"
    shutil.copytree(PROFILE / "welcome", broken)
    yaml_file = broken / "welcome.yaml"
    text = yaml_file.read_text(encoding="utf-8")
    text = text.replace('number: "04 65 71 00 00"', 'number: "12 34"')
    text = text.replace("      title: Who are we?\n", "")
    text = text.replace("  keep_days: 30 ", "  keep_days: 3000 ")
    text = text.replace("  about: pictos/nous.svg", "  about: pictos/absent.svg")
    text = text.replace("sample: true", "sample: true\ncolour: blue")
    yaml_file.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as refused:
        content.load(broken)
    said = str(refused.value)
    lines = text.splitlines()

    def line_of(fragment: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if fragment in line)

    assert "has 5 problem(s)" in said
    assert (f"{yaml_file}:{line_of('number: ')}: phone.number: '12 34' is not a French "
            "phone number: write 10 digits") in said
    assert f"{yaml_file}:{line_of('colour')}: colour: unknown key" in said
    assert (f"{yaml_file}:{line_of('keep_days')}: messages.keep_days: expected a whole "
            "number from 1 to 365, not 3000") in said
    assert f"{yaml_file}:{line_of('absent.svg')}: pictograms.about: " in said
    assert "absent.svg does not exist: draw it or remove this line" in said
    assert ("sections.about.en.title: missing or empty: give the section's title in en"
            in said)


def test_a_broken_places_row_is_a_warning_not_a_refusal(tmp_path: Path) -> None:
    copy = tmp_path / "welcome"
    shutil.copytree(PROFILE / "welcome", copy)
    places = copy / "lieux.csv"
    places.write_text(places.read_text(encoding="utf-8").replace('"05600"', '"5600"', 1),
                      encoding="utf-8")
    loaded = content.load(copy)
    assert len(loaded.places.places) == 25
    [warning] = loaded.warnings
    assert re.fullmatch(rf"{places}:\d+: code_postal: '5600' does not match .*", warning)


def test_a_pictogram_with_a_script_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "welcome"
    shutil.copytree(PROFILE / "welcome", copy)
    (copy / "pictos" / "wifi.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        encoding="utf-8")
    with pytest.raises(UsageError, match="pictograms.internet: .*scripts, event handlers"):
        content.load(copy)


# -- the page ------------------------------------------------------------------------


def test_the_page_has_every_section_in_a_table_of_contents(rendered: Path) -> None:
    root = parse(rendered / "index.html")
    assert root.get("lang") == "fr"
    sections = [s.get("id") for s in root.iter(f"{XHTML}section")]
    assert sections == list(content.SECTIONS)
    toc = [a.get("href") for a in root.iter(f"{XHTML}a") if a.get("href", "").startswith("#")
           and a.get("href") != "#haut"]
    assert toc == [f"#{key}" for key in content.SECTIONS]
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids)), "an id is used twice"
    headings = [words(h) for h in root.iter(f"{XHTML}h2")]
    assert headings[1:] == ["Se connecter à Internet", "Un problème ?",
                            "Trouver de l'aide près de chez vous", "Les prochains ateliers",
                            "Nous appeler", "Nous écrire un message", "Qui sommes-nous ?"]
    assert not list(root.iter(f"{XHTML}script"))


def test_the_page_says_the_steps_the_places_the_phone_and_its_date(rendered: Path) -> None:
    root = parse(rendered / "index.html")
    text = words(root)
    steps = next(ol for ol in root.iter(f"{XHTML}ol") if ol.get("class") == "steps")
    assert words(steps.find(f"{XHTML}li")) == "Regardez en haut de l'écran, à droite."
    assert "Mis à jour le 6 décembre 2026" in text
    for name in ("Espace France Services du Pays des Ecrins", "Planète Champsaur Valgo",
                 "France Services de Serre-Ponçon"):
        assert name in text
    assert "Mercredi et jeudi : de 9 h à 12 h 15 et de 13 h 30 à 17 h 30." in text
    assert "Horaires, tels qu'ils sont écrits : Lundi au Mardi de 13h30" in text
    links = {a.get("href") for a in root.iter(f"{XHTML}a")}
    assert {"tel:+33465710000", "tel:+33492201880", "en.html"} <= links
    assert "Besoin d'aide ? Appelez-nous : 04 65 71 00 00" in text
    assert "Lundi, mercredi et vendredi : de 9 h à 12 h." in text    # the phone's hours
    assert "Mardi et jeudi : de 9 h à 12 h et de 14 h à 17 h." in text
    assert "Page d'exemple à compléter" in text                    # sample: true


def test_only_the_next_workshops_are_shown(rendered: Path) -> None:
    root = parse(rendered / "index.html")
    workshops = next(u for u in root.iter(f"{XHTML}ul") if u.get("class") == "workshops")
    items = [words(li) for li in workshops.findall(f"{XHTML}li")]
    assert items[0].startswith("Mardi 8 décembre, de 14 h à 16 h Atelier : découvrir son "
                               "ordinateur")
    assert not any("Journée portes ouvertes" in item for item in items)   # 14 November
    assert not any(item.startswith(("Mardi 22 décembre", "Mardi 29 décembre"))
                   for item in items)
    assert any(item.startswith("Samedi 2 janvier, de 9 h 30 à 12 h Permanence")
               for item in items)


def test_the_message_form_posts_to_the_local_service(rendered: Path) -> None:
    root = parse(rendered / "index.html")
    [form] = root.iter(f"{XHTML}form")
    assert form.get("method") == "post"
    assert form.get("action") == "http://127.0.0.1:8377/messages"
    names = {e.get("name") for e in form.iter() if e.get("name")}
    assert names == {"lang", "text", "name", "contact"}
    [text] = form.iter(f"{XHTML}textarea")
    assert text.get("required") == "required" and text.get("maxlength") == "2000"
    labels = {lab.get("for") for lab in form.iter(f"{XHTML}label")}
    assert {"text-fr", "name-fr", "contact-fr"} <= labels


def test_the_english_page_says_the_same_in_english(rendered: Path) -> None:
    root = parse(rendered / "en.html")
    assert root.get("lang") == "en"
    text = words(root)
    assert "Getting started with my computer" in text and "Updated on December 6, 2026" in text
    assert "Monday, Wednesday and Friday: 9:00 to 12:00." in text
    assert "Tuesday 8 December" in text
    assert {a.get("href") for a in root.iter(f"{XHTML}a")} >= {"index.html"}


def test_every_image_has_a_text_alternative_and_every_asset_exists(rendered: Path) -> None:
    for page in ("index.html", "en.html"):
        root = parse(rendered / page)
        for img in root.iter(f"{XHTML}img"):
            assert img.get("alt") == "", "pictograms are beside their words: alt=\"\""
            assert (rendered / img.get("src", "")).is_file()
        for link in root.iter(f"{XHTML}link"):
            assert (rendered / link.get("href", "")).is_file()
    css = (rendered / "assets" / "style.css").read_text(encoding="utf-8")
    assert "html { font-size: 20px; }" in css           # 18 px at least, even on a phone
    assert "font-size: 18px" in css


def test_preview_and_the_cli_render_the_profile(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    index = preview(PROFILE, tmp_path / "a", today=TODAY)
    assert index == tmp_path / "a" / "index.html" and (tmp_path / "a" / "en.html").is_file()
    parser = argparse.ArgumentParser()
    profile_welcome.register(parser.add_subparsers())
    args = parser.parse_args(["welcome", "bureau-solidaire", "--preview", "--out",
                              str(tmp_path / "b"), "--today", "2026-12-06"])
    assert args.func(args, None) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'b' / 'index.html'}\n"
    with pytest.raises(UsageError, match="no profile named 'nope'"):
        profile_welcome.profile_dir("nope")


# -- in a real browser -----------------------------------------------------------------


@pytest.fixture
def message_service(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    queue = tmp_path / "queue"
    with (tmp_path / "service.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(SCRIPT), "serve", "--queue",
                                 str(queue), "--port", str(port)], stdout=log, stderr=log)
    try:
        _wait_listening(port, proc)
        yield port, queue
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_page_passes_axe_and_its_form_reaches_the_local_service_from_a_file(
        loaded: content.WelcomeContent, tmp_path: Path,
        message_service: tuple[int, Path]) -> None:
    port, queue = message_service
    out = tmp_path / "page"
    site.render(loaded, out, today=TODAY, message_url=f"http://127.0.0.1:{port}/messages")
    with chromium() as browser, new_page(browser, out.as_uri() + "/") as page:
        for name in ("index.html", "en.html"):
            page.goto(name)
            found = serious_violations(page)
            assert found == [], describe(name, found)
            assert sideways_overflow(page) == 0, f"{name} scrolls sideways"
        page.set_viewport_size({"width": 400, "height": 800})
        page.goto("index.html")
        assert sideways_overflow(page) == 0, "the page scrolls sideways on a phone"
        page.get_by_label("Votre message").fill("Bonjour, l'imprimante ne marche pas.")
        page.get_by_role("button", name="Envoyer le message").click()
        page.wait_for_url(f"http://127.0.0.1:{port}/messages/sent?lang=fr")
        assert "Votre message est bien gardé" in page.content()
    [stored] = queue.glob("*.json")
    assert "l'imprimante ne marche pas" in stored.read_text(encoding="utf-8")
