"""NVMe controller and namespace capabilities from nvme-cli's JSON (pure).

Bits (NVM Express Base Specification, Identify Controller):
OACS bit 1 Format NVM supported; SANICAP bit 0 crypto erase, bit 1 block
erase, bit 2 overwrite; FNA bit 0 format applies to all namespaces, bit 1
secure erase applies to all namespaces, bit 2 cryptographic erase supported
as part of Format NVM. Crypto erase is claimed only from these bits, never
from a command merely being accepted (QEMU accepts SES=2 with FNA=0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from imager.errors import DeviceError


@dataclass(frozen=True)
class NvmeController:
    model: str
    serial: str
    firmware: str
    namespaces: int
    format_supported: bool
    sanitize_crypto: bool
    sanitize_block: bool
    sanitize_overwrite: bool
    format_all_namespaces: bool
    erase_all_namespaces: bool
    format_crypto_erase: bool

    @property
    def sanitize_supported(self) -> bool:
        return self.sanitize_crypto or self.sanitize_block or self.sanitize_overwrite


@dataclass(frozen=True)
class NvmeNamespace:
    blocks: int
    in_use: int
    block_size: int

    @property
    def size(self) -> int:
        return self.blocks * self.block_size


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DeviceError(f"{what}: not the JSON nvme-cli prints with -o json ({exc})") from exc
    if not isinstance(data, dict):
        raise DeviceError(f"{what}: expected a JSON object")
    return data


def _bit(value: int, n: int) -> bool:
    return bool((value >> n) & 1)


def parse_id_ctrl(text: str) -> NvmeController:
    """`nvme id-ctrl DEV -o json` -> NvmeController."""
    d = _json(text, "nvme id-ctrl")
    oacs, sanicap, fna = int(d.get("oacs", 0)), int(d.get("sanicap", 0)), int(d.get("fna", 0))
    return NvmeController(
        model=str(d.get("mn", "")).strip(), serial=str(d.get("sn", "")).strip(),
        firmware=str(d.get("fr", "")).strip(), namespaces=int(d.get("nn", 0)),
        format_supported=_bit(oacs, 1),
        sanitize_crypto=_bit(sanicap, 0), sanitize_block=_bit(sanicap, 1),
        sanitize_overwrite=_bit(sanicap, 2),
        format_all_namespaces=_bit(fna, 0), erase_all_namespaces=_bit(fna, 1),
        format_crypto_erase=_bit(fna, 2),
    )


def parse_id_ns(text: str) -> NvmeNamespace:
    """`nvme id-ns DEV -o json` -> NvmeNamespace (size from the in-use LBA format)."""
    d = _json(text, "nvme id-ns")
    formats = d.get("lbafs") or []
    index = int(d.get("flbas", 0)) & 0xF
    if index >= len(formats):
        raise DeviceError(f"nvme id-ns: LBA format {index} is not listed (lbafs has "
                          f"{len(formats)} entries)")
    return NvmeNamespace(blocks=int(d["nsze"]), in_use=int(d.get("nuse", 0)),
                         block_size=1 << int(formats[index]["ds"]))
