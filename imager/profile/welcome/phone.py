"""French phone numbers: as written by people ("04 92 20 18 80", "04.92.20.18.80")
or in the international form the open-data schema asks ("+33492201880")."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Phone:
    """A number with its `tel:` target and the way people read it."""

    international: str   # +33492201880
    national: str        # 04 92 20 18 80

    @property
    def href(self) -> str:
        return f"tel:{self.international}"


def parse(text: str) -> Phone | None:
    """The number in `text`, or None when it is not a French number of 10 digits
    (0X XX XX XX XX) or +33 followed by 9 digits."""
    digits = re.sub(r"[\s.\-()]", "", text)
    if re.fullmatch(r"\+33\d{9}", digits):
        national = "0" + digits[3:]
    elif re.fullmatch(r"0\d{9}", digits):
        national = digits
    else:
        return None
    spaced = " ".join(national[i:i + 2] for i in range(0, 10, 2))
    return Phone("+33" + national[1:], spaced)
