"""What a barcode scanner typed, read back as what its label says.

A scanner is a keyboard: it sends the keys of a layout (most are set to US
QWERTY) and the computer reads them with its own. On a French AZERTY station
a US-QWERTY scanner's digits come out as `&é"'(-è_çà` and a, q, z, w and m as
q, a, w, z and `,`. A label never holds those accented characters, so a label
that does is read back key by key (`from_qwerty`), and the technician is told.
"""

from __future__ import annotations

from dataclasses import dataclass

# What an AZERTY computer shows for each key a US-QWERTY scanner sends -> the key.
_BACK = str.maketrans({
    "&": "1", "é": "2", '"': "3", "'": "4", "(": "5", "-": "6", "è": "7", "_": "8",
    "ç": "9", "à": "0", ")": "-", ";": ".", "!": "/",
    "a": "q", "q": "a", "z": "w", "w": "z", ",": "m",
    "A": "Q", "Q": "A", "Z": "W", "W": "Z", "?": "M",
})
_TELLTALE = set("&é\"'(èçà_")


@dataclass(frozen=True)
class Scanned:
    label: str          # what the label says
    typed: str          # what the computer received
    corrected: bool     # read back from a US-QWERTY scanner on an AZERTY station


def read_label(typed: str) -> Scanned:
    """One scanned or typed label, spaces trimmed, read back from QWERTY when it must."""
    text = typed.strip()
    if _TELLTALE & set(text):
        return Scanned(text.translate(_BACK), text, True)
    return Scanned(text, text, False)


def read_labels(text: str) -> list[Scanned]:
    """Every non-empty line of `text` (a scanner ends each label with Enter)."""
    return [read_label(line) for line in text.splitlines() if line.strip()]
