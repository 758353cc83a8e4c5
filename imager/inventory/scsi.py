"""SCSI SANITIZE support from `sg_opcodes` (pure).

sg_opcodes lists supported commands as "opcode  service-action  name" lines;
SANITIZE is opcode 0x48 with service actions 1 overwrite, 2 block erase,
3 cryptographic erase (SBC-3). A device that refuses REPORT SUPPORTED
OPERATION CODES (QEMU's virtio-scsi disk) lists nothing: no sanitize claimed.
"""

from __future__ import annotations

import re

SERVICE_ACTIONS = {1: "overwrite", 2: "block", 3: "crypto"}
_LINE = re.compile(r"^\s*48\s+([0-9a-fA-F]+)\s+\S", re.M)


def sanitize_modes(text: str) -> frozenset[str]:
    """The SANITIZE service actions the device reports supporting."""
    return frozenset(SERVICE_ACTIONS[int(sa, 16)] for sa in _LINE.findall(text)
                     if int(sa, 16) in SERVICE_ACTIONS)
