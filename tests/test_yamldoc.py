"""The one YAML reader of the project (imager.yamldoc.read): the value, the line of
every key path, scalars as written, keys given twice, and broken YAML named by its line."""

from __future__ import annotations

import pytest

from imager import yamldoc
from imager.errors import UsageError

TEXT = """\
# a comment first: the document starts on line 3

network: Réseau
sections:
  - key: internet
    fr:
      title: Se connecter
      lines: [Allumez, Cherchez]
  - key: about
version: 1.10
"""


def test_every_key_path_has_its_line() -> None:
    doc = yamldoc.read(TEXT, "welcome.yaml")
    assert doc.value["sections"][0]["fr"]["title"] == "Se connecter"
    assert doc.lines["network"] == 3
    assert doc.lines["sections[1]"] == 9 and doc.lines["sections[1].key"] == 9
    assert doc.line("sections[0].fr.title") == 7
    assert doc.line("sections[0].fr.lines[1]") == 8


def test_where_falls_back_to_the_nearest_parent() -> None:
    doc = yamldoc.read(TEXT, "welcome.yaml")
    assert doc.where("sections[0].fr.title") == "welcome.yaml:7: sections[0].fr.title"
    assert doc.where("sections[1].fr.title") == "welcome.yaml:9: sections[1].fr.title"
    assert doc.where("phone.number") == "welcome.yaml:3: phone.number"   # the document's line
    assert doc.where("") == "welcome.yaml:3"


def test_scalars_are_kept_as_written() -> None:
    doc = yamldoc.read(TEXT, "welcome.yaml")
    assert doc.value["version"] == 1.1 and doc.written["version"] == "1.10"


def test_keys_given_twice_are_reported_with_their_lines() -> None:
    doc = yamldoc.read("a:\n  b: 1\n  c: 2\n  b:\n    d: 3\n", "x.yaml")
    assert doc.twice == (("a.b", 4),)
    assert doc.value == {"a": {"b": {"d": 3}, "c": 2}}
    assert doc.line("a.b") == 4 and doc.line("a.b.d") == 5   # the value YAML keeps


def test_broken_yaml_names_its_line_and_the_fix() -> None:
    with pytest.raises(yamldoc.InvalidYaml) as caught:
        yamldoc.read("a: 1\nb: 'open\n", "x.yaml")
    assert isinstance(caught.value, UsageError) and caught.value.line == 2   # the quote
    assert str(caught.value).startswith("x.yaml:2: not valid YAML (while scanning a quoted "
                                        "scalar: found unexpected end of stream): fix the")
    with pytest.raises(yamldoc.InvalidYaml, match=r"^x.yaml:3: not valid YAML"):
        yamldoc.read("a:\n  b: 1\n c: 2\n", "x.yaml")                  # where it stopped


def test_problems_of_a_document_carry_its_lines() -> None:
    doc = yamldoc.read(TEXT, "welcome.yaml")
    problems = yamldoc.Problems(document=doc)
    problems.add("sections[0].fr.title", "too long")
    assert problems == ["welcome.yaml:7: sections[0].fr.title: too long"]
    unplaced = yamldoc.Problems()
    unplaced.add("media.nvme[2]", "unknown method")
    assert unplaced == ["media.nvme[2]: unknown method"]


def test_an_empty_document() -> None:
    doc = yamldoc.read("# nothing\n", "x.yaml")
    assert doc.value is None and doc.lines == {} and doc.where("a") == "x.yaml:1: a"
