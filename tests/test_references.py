"""Citations of NIST SP 800-88 name their edition, and only sections that exist in it.

Rev. 1 (2014) was withdrawn when Rev. 2 was published (26 September 2025).
Rev. 2 is cited without a section (none could be checked against its text);
Rev. 1 is cited only for what Rev. 2 has no equivalent of: the sampling rule
(§4.7), the media tables (Appendix A, now IEEE 2883) and the sample
certificate (Appendix G)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import DATA

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (ROOT / "imager", ROOT / "profiles", ROOT / "certificates", DATA / "certificates")
SUFFIXES = {".py", ".yaml", ".json", ".html", ".css", ".md"}
REV1_SECTIONS = {"§4.7", "Appendix A", "Appendix G"}
# A line break inside a citation: implicit string concatenation or a comment.
JOIN = re.compile(r"\s*\"?\s*\n\s*(?:#\s*)?\"?")
NIST = re.compile(r"800-88(?P<edition>\s+Rev\. [12]\b)?")
REVISION = re.compile(r"Rev\.?\s?(?P<n>[12])\b(?:\s*(?P<section>§\s?[\d.]*\d|Sec(?:tion|\.)\s?"
                      r"[\d.]*\d|App(?:endix|\.)\s[A-Z]\b|Table\s[A-Z]-\d+))?")


def shipped_texts() -> dict[str, str]:
    files = (p for root in SHIPPED for p in root.rglob("*")
             if p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    return {str(p.relative_to(ROOT)): JOIN.sub(" ", p.read_text(encoding="utf-8"))
            for p in sorted(files)}


def test_every_nist_sp_800_88_citation_names_its_edition() -> None:
    missing = [f"{name}: …{text[max(0, m.start() - 40):m.end() + 20]}…"
               for name, text in shipped_texts().items()
               for m in NIST.finditer(text) if m.group("edition") is None]
    assert missing == [], "\n".join(missing)


def test_sections_cited_exist_in_the_edition_named() -> None:
    wrong = []
    for name, text in shipped_texts().items():
        for m in REVISION.finditer(text):
            section = m.group("section")
            if section is None:
                continue
            section = re.sub(r"\s+", " ", section)
            if m.group("n") == "2" or section not in REV1_SECTIONS:
                wrong.append(f"{name}: {m.group(0)!r}")
    assert wrong == [], "\n".join(wrong)


def _group(pattern: re.Pattern[str], text: str, name: str) -> str | None:
    m = pattern.search(text)
    assert m is not None, text
    return m.group(name)


def test_the_checks_catch_what_they_look_for() -> None:
    assert _group(NIST, "per NIST SP 800-88 §4.7", "edition") is None
    assert _group(REVISION, "Rev.2 §4.6", "section") == "§4.6"
    assert _group(REVISION, "Rev. 1 Appendix A (ATA)", "section") == "Appendix A"
    assert _group(REVISION, "Rev. 2 has no media tables", "section") is None
    assert JOIN.sub(" ", 'NIST SP 800-88 "\n    "Rev. 2') == "NIST SP 800-88 Rev. 2"
