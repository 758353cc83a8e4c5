"""A US-QWERTY barcode scanner on an AZERTY station types `&é"'(` for digits:
the labels are read back key by key, and said so."""

from __future__ import annotations

import pytest

from imager.inventory.scanned import read_label, read_labels


@pytest.mark.parametrize(("typed", "label"), [
    ("S&éé'(-è_çà", "S1224567890"),           # digits from the number row
    ("WDà&_ç(QZ", "ZD01895AW"),              # letters a/q and z/w swapped back
    ("é((ç)ç(ç", "2559-959"),                 # a dash, typed where QWERTY has it
    (",èà&", "m701"),
])
def test_a_qwerty_scanner_on_azerty_is_read_back(typed: str, label: str) -> None:
    read = read_label(typed)
    assert read.label == label and read.corrected and read.typed == typed


def test_a_label_typed_right_is_left_alone() -> None:
    read = read_label("  WD-WXK1A4075321 ")
    assert read.label == "WD-WXK1A4075321" and not read.corrected


def test_one_label_per_line() -> None:
    assert [r.label for r in read_labels("S1\n\n &é \nS3\n")] == ["S1", "12", "S3"]
