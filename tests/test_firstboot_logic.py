"""The first-boot dialog's decisions (standard library only, on the host): the
login from the name, the password checks and their French messages, the hostname
from the asset tag, the plan of commands; and the payload that ships them."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from imager.errors import UsageError
from imager.imaging import after
from imager.inventory.dmi import PLACEHOLDERS
from imager.profile.firstboot import DEPENDS, firstboot_payload
from imager.profile.firstboot.laptop.logic import (
    LANGUAGES,
    TEXTS,
    VALID_LOGIN,
    Account,
    Command,
    Config,
    SystemFacts,
    WriteFile,
    account_problems,
    already_done,
    chosen_hostname,
    clean_name,
    hostname_from_tag,
    hosts_with,
    login_from_name,
    password_problem,
    plan,
    say,
    usable_tag,
)
from imager.profile.package import check_relation

# adduser's default NAME_REGEX (stricter than useradd's): a derived login fits both.
ADDUSER_NAME = re.compile(r"^[a-z][-a-z0-9_]*$")
CONFIG = Config(slug="reseau", unit="reseau-premier-demarrage.service",
                placeholders=tuple(sorted(PLACEHOLDERS)))
PC = Config(slug="reseau", hostname_prefix="pc", placeholders=CONFIG.placeholders)


@pytest.mark.parametrize(("name", "login"), [
    ("Marie-Hélène Dupont", "marie-helene"),
    ("  élodie  ", "elodie"),
    ("N'Diaye Awa", "ndiaye"),
    ("Łukasz Nowak", "lukasz"),
    ("Søren Ærø", "soren"),
    ("Œdipe", "oedipe"),
    ("José María", "jose"),
    ("ÇA VA", "ca"),
    ("42 Jean", "jean"),
    ("محمد Ali", "ali"),
    ("محمد علي", "utilisateur"),
    ("Иван", "utilisateur"),
    ("-Anne-", "anne"),
    ("Jean_Luc", "jeanluc"),
    ("A" * 40, "a" * 32),
])
def test_login_comes_from_the_first_name(name: str, login: str) -> None:
    assert login_from_name(name) == login
    assert VALID_LOGIN.fullmatch(login) and ADDUSER_NAME.match(login)


def test_a_taken_login_gets_a_number() -> None:
    assert login_from_name("Marie Curie", {"marie"}) == "marie2"
    assert login_from_name("Marie Curie", {"marie", "marie2"}) == "marie3"
    assert login_from_name("Root Beer") == "root2"          # never root
    assert login_from_name("Games Night", {"games"}) == "games2"   # Debian's games user
    long = login_from_name("B" * 40, {"b" * 32})
    assert long == "b" * 31 + "2" and len(long) == 32


def test_the_name_keeps_its_accents_but_not_what_passwd_cannot_hold() -> None:
    assert clean_name("  Marie-Hélène   Dupont ") == "Marie-Hélène Dupont"
    assert clean_name("Dupont, Marie: x=1\n") == "Dupont Marie x 1"


@pytest.mark.parametrize(("password", "again", "key"), [
    ("", "", "password_empty"),
    ("court", "court", "password_short"),
    ("1234567", "1234567", "password_short"),
    ("soleil du matin", "soleil du matn", "password_mismatch"),
    ("ligne\nsuivante", "ligne\nsuivante", "password_control"),
    ("12345678", "12345678", None),
    ("éàèùçôîâ", "éàèùçôîâ", None),            # 8 characters, whatever their bytes
    ("a b c d e", "a b c d e", None),           # spaces are fine, no complexity rules
])
def test_password_checks(password: str, again: str, key: str | None) -> None:
    problem = password_problem(password, again, minimum=8)
    assert (problem.key if problem else None) == key


def test_password_messages_say_what_to_do_in_plain_french_and_english() -> None:
    short = password_problem("court", "court", minimum=8)
    assert short is not None
    assert short.say("fr") == ("Le mot de passe est trop court : il faut au moins 8 "
                               "caractères. Vous en avez écrit 5.")
    assert short.say("en") == ("The password is too short: it needs at least 8 characters. "
                               "You typed 5.")
    mismatch = password_problem("soleil du matin", "soleil", minimum=8)
    assert mismatch is not None and "ne sont pas les mêmes" in mismatch.say("fr")
    problems = account_problems("", "court", "court", minimum=8)
    assert [p.key for p in problems] == ["name_empty", "password_short"]


def test_every_text_is_in_french_and_english_and_fills_in() -> None:
    values = {"login": "marie", "n": 8, "k": 5, "i": 2, "detail": "useradd exited 1"}
    for key, texts in TEXTS.items():
        assert set(texts) == set(LANGUAGES), key
        for lang in LANGUAGES:
            text = say(key, lang, **values)
            assert text and "{" not in text, (key, lang)
    assert say("title", "fr") == "Bonjour ! Ce poste est à vous."
    assert say("subtitle", "fr") == "Choisissez votre nom et votre mot de passe."


# --- hostname ---------------------------------------------------------------------------

TAGS = ["RS05-0042", "  Inv. 2024/117 ", "ÉCOLE-Ü 7", "12345", "---", "a" * 70, "pc"]


@pytest.mark.parametrize("tag", TAGS)
def test_hostname_from_tag_is_the_deployments_rule(tag: str) -> None:
    """The laptop cannot import imager: its copy of the rule must agree with
    imager.imaging.after.hostname_for, which names machines at deployment."""
    for prefix in ("pc", "poste"):
        try:
            expected: str | None = after.hostname_for(tag, prefix=prefix)
        except UsageError:
            expected = None
        assert hostname_from_tag(tag, prefix) == expected


def test_hosts_file_is_rewritten_as_the_deployment_does() -> None:
    for text in ("127.0.0.1\tlocalhost\n127.0.1.1\tpc-old\n::1\tlocalhost\n",
                 "127.0.0.1 localhost\n", "", "127.0.1.1 a\n127.0.1.1 b\n"):
        assert hosts_with(text, "pc-rs05-0042") == after.hosts_with(text, "pc-rs05-0042")


def test_firmware_placeholders_are_no_asset_tag() -> None:
    for placeholder in PLACEHOLDERS:
        assert usable_tag(placeholder.upper(), CONFIG.placeholders) is None, placeholder
    for redacted in ("XXXXXXXX", "00000000", "   ", "", None):
        assert usable_tag(redacted, CONFIG.placeholders) is None
    assert usable_tag(" RS05-0042 ", CONFIG.placeholders) == "RS05-0042"


@pytest.mark.parametrize(("hostname", "tags", "expected"), [
    ("poste", ("RS05-0042", "CHASSIS-1", "BOARD-1", "SN1"), "poste-rs05-0042"),  # file first
    ("poste", (None, "Default string", "BOARD-1", "SN1"), "poste-board-1"),      # SMBIOS
    ("poste", (None, "CHASSIS-1", None, None), "poste-chassis-1"),
    ("poste", (None, "No Asset Tag", None, "5CG2041XYZ"), "poste-5cg2041xyz"),  # serial
    ("poste", (None, "To Be Filled By O.E.M.", None, "System Serial Number"), None),
    ("poste-rs05-0042", ("RS05-0099", None, None, None), None),  # the deployment named it
])
def test_hostname_choice(hostname: str, tags: tuple[str | None, ...],
                         expected: str | None) -> None:
    facts = SystemFacts(hostname=hostname, asset_tags=tags)
    assert chosen_hostname(facts, CONFIG) == expected


def test_a_fixed_hostname_is_kept() -> None:
    fixed = Config(slug="reseau", hostname_from="fixed")
    assert chosen_hostname(SystemFacts(hostname="poste", asset_tags=("RS05",)), fixed) is None
    assert chosen_hostname(SystemFacts(hostname="poste", asset_tags=("RS05",)), PC) == "pc-rs05"


# --- the plan -----------------------------------------------------------------------------

FACTS = SystemFacts(users=frozenset({"root", "games"}),
                    groups=frozenset({"root", "sudo", "audio", "video", "users", "netdev"}),
                    hostname="poste", hosts="127.0.0.1\tlocalhost\n",
                    asset_tags=("RS05-0042", None, None))


def test_plan_creates_the_account_sets_the_hostname_and_ends_the_first_boot() -> None:
    account = Account("Marie-Hélène Dupont", "marie-helene", "soleil du matin")
    steps = plan(account, FACTS, CONFIG)
    useradd, chpasswd = steps[0], steps[1]
    assert isinstance(useradd, Command) and isinstance(chpasswd, Command)
    assert useradd.argv == ("useradd", "--create-home", "--shell", "/bin/bash",
                            "--user-group", "--comment", "Marie-Hélène Dupont",
                            "--groups", "sudo,audio,video,netdev,users", "marie-helene")
    assert chpasswd.argv == ("chpasswd",) and chpasswd.secret
    assert chpasswd.stdin == "marie-helene:soleil du matin\n"
    files = {s.path: s.text for s in steps if isinstance(s, WriteFile)}
    assert files["/etc/hostname"] == "poste-rs05-0042\n"
    assert "127.0.1.1\tposte-rs05-0042" in files["/etc/hosts"]
    assert CONFIG.marker in files and CONFIG.autologin_file not in files
    assert steps[-1] == Command(("systemctl", "disable", "reseau-premier-demarrage.service"),
                                may_fail=True)
    assert "soleil" not in repr(steps) and "soleil" not in repr(account)


def test_plan_with_autologin_writes_lightdms_setting() -> None:
    steps = plan(Account("Awa", "awa", "soleil du matin", autologin=True), FACTS, CONFIG)
    files = {s.path: s.text for s in steps if isinstance(s, WriteFile)}
    assert "[Seat:*]\nautologin-user=awa\nautologin-user-timeout=0\n" in \
        files["/etc/lightdm/lightdm.conf.d/70-reseau-autologin.conf"]


def test_nothing_to_ask_once_done_or_when_someone_has_an_account() -> None:
    assert already_done(FACTS) is None
    assert already_done(SystemFacts(done=True)) is not None
    assert "marie" in (already_done(SystemFacts(owners=("marie",))) or "")


def test_config_goes_through_json() -> None:
    assert Config.from_json(CONFIG.to_json()) == CONFIG


# --- the payload ------------------------------------------------------------------------------


def test_payload_ships_the_program_the_unit_and_lightdms_setting() -> None:
    payload = firstboot_payload("reseau")
    files = {f.path: f for f in payload.files}
    lib = "/usr/lib/reseau-accueil"
    for name in ("__init__", "__main__", "logic", "system", "dialog"):
        assert f"{lib}/python/firstboot/{name}.py" in files
    assert files[f"{lib}/premier-demarrage"].mode == 0o755
    assert payload.units == ("reseau-premier-demarrage.service",)
    unit = files["/usr/lib/systemd/system/reseau-premier-demarrage.service"].data().decode()
    assert "Before=display-manager.service" in unit and "WantedBy=graphical.target" in unit
    assert "ConditionPathExists=!/var/lib/reseau-premier-demarrage/fait" in unit
    assert f"ExecStart={lib}/premier-demarrage" in unit
    lightdm = files["/usr/share/lightdm/lightdm.conf.d/60-reseau-accueil.conf"].data()
    assert b"greeter-hide-users=false" in lightdm
    config = Config.from_json(files[f"{lib}/python/firstboot/config.json"].data().decode())
    assert config == CONFIG
    for f in payload.files:
        assert not re.search(rb"@[A-Z]+@", f.data()), f"{f.path}: a template mark is left"
    assert payload.conffiles == ()       # nothing under /etc: every update replaces it all


def test_payload_scripts_are_valid_shell_and_depends_valid_relations() -> None:
    payload = firstboot_payload("reseau")
    for f in payload.files:
        if f.mode == 0o755:
            assert f.data().startswith(b"#!/bin/sh\n")
            subprocess.run(["sh", "-n"], input=f.data(), check=True)
    assert payload.depends == DEPENDS
    for relation in DEPENDS:
        check_relation(relation)
    assert json.loads(next(f.data() for f in payload.files if f.path.endswith(".json")))


def test_payload_refuses_a_bad_slug_or_hostname_rule() -> None:
    for slug in ("Réseau", "-x", "a b", ""):
        with pytest.raises(UsageError, match="network slug"):
            firstboot_payload(slug)
    with pytest.raises(UsageError, match="choose asset-tag or fixed"):
        firstboot_payload("reseau", hostname="serial")
