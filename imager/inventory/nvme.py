"""NVMe controller and namespace capabilities from nvme-cli's JSON (pure).

Bits (NVM Express Base Specification, Identify Controller):
OACS bit 1 Format NVM supported; SANICAP bit 0 crypto erase, bit 1 block
erase, bit 2 overwrite; FNA bit 0 format applies to all namespaces, bit 1
secure erase applies to all namespaces, bit 2 cryptographic erase supported
as part of Format NVM. Crypto erase is claimed only from these bits, never
from a command merely being accepted (QEMU accepts SES=2 with FNA=0).

The Sanitize Status log (`nvme sanitize-log`) is parsed from nvme-cli's JSON
(what the engine reads) or from its normal text (what people publish).
"""

from __future__ import annotations

import json
import re
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
    dlfeat: int = 0        # Deallocate Logical Block Features; bits 2:0 read-after-deallocate

    @property
    def size(self) -> int:
        return self.blocks * self.block_size


@dataclass(frozen=True)
class NvmeListEntry:
    """One namespace block device in `nvme list`."""

    path: str
    serial: str
    model: str
    namespace: int


def _list_json(data: dict[str, Any]) -> tuple[NvmeListEntry, ...]:
    return tuple(NvmeListEntry(str(d["DevicePath"]), str(d.get("SerialNumber", "")).strip(),
                               str(d.get("ModelNumber", "")).strip(), int(d.get("NameSpace", 0)))
                 for d in data.get("Devices", ()))


_LIST_ROW = re.compile(r"^(/dev/nvme\S+)\s+(?:SN:\s*)?(\S+)\s+(.*?)\s{2,}(\d+)\s{2,}", re.M)


def parse_list(text: str) -> tuple[NvmeListEntry, ...]:
    """`nvme list -o json` (or its table) -> the namespace block devices."""
    if text.lstrip().startswith("{"):
        return _list_json(_json(text, "nvme list"))
    return tuple(NvmeListEntry(m.group(1), m.group(2), m.group(3).strip(), int(m.group(4)))
                 for m in _LIST_ROW.finditer(text))


def siblings(entries: tuple[NvmeListEntry, ...], path: str) -> tuple[str, ...]:
    """The other namespaces of the controller `path` belongs to (same serial)."""
    mine = next((e for e in entries if e.path == path), None)
    if mine is None:
        return ()
    return tuple(e.path for e in entries if e.serial == mine.serial and e.path != path)


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
                         block_size=1 << int(formats[index]["ds"]),
                         dlfeat=int(d.get("dlfeat", 0)))


# Sanitize Status log page (log identifier 81h), SSTAT bits 2:0.
SANITIZE_NEVER = 0         # the NVM subsystem has never been sanitized
SANITIZE_COMPLETED = 1     # the most recent sanitize completed successfully
SANITIZE_IN_PROGRESS = 2
SANITIZE_FAILED = 3
SANITIZE_COMPLETED_ND = 4  # completed successfully, deallocation after a no-deallocate request
NOT_REPORTED = 0xFFFFFFFF  # estimated time field: no time period reported


@dataclass(frozen=True)
class SanitizeLog:
    """The Sanitize Status log page as nvme-cli prints it (pure data).

    `global_data_erased` (SSTAT bit 8) is True when nothing was written to the
    NVM subsystem since the most recent successful sanitize; None when the
    output did not say. Estimated times are seconds, None when the drive
    reports none (FFFFFFFFh); 0 means "done when the command completes"."""

    status: int
    sprog: int
    global_data_erased: bool | None
    passes: int = 0                       # overwrite passes completed (SSTAT bits 7:3)
    cdw10: int | None = None              # CDW10 of the sanitize that set this status
    overwrite_seconds: int | None = None  # for 16 overwrite passes
    block_erase_seconds: int | None = None
    crypto_erase_seconds: int | None = None

    @property
    def in_progress(self) -> bool:
        return self.status == SANITIZE_IN_PROGRESS

    @property
    def completed(self) -> bool:
        return self.status in (SANITIZE_COMPLETED, SANITIZE_COMPLETED_ND)

    @property
    def failed(self) -> bool:
        return self.status == SANITIZE_FAILED

    @property
    def progress(self) -> float | None:
        """Fraction done (SPROG / 65536) while in progress, else None."""
        return self.sprog / 65536 if self.in_progress else None

    @property
    def action(self) -> int | None:
        """SANACT of the sanitize this status is about (2 block, 3 overwrite, 4 crypto);
        None when not reported (000b is a reserved action: a drive leaving SCDW10 0)."""
        return (self.cdw10 & 0x7) or None if self.cdw10 is not None else None


def parse_sanitize_log(text: str) -> SanitizeLog:
    """`nvme sanitize-log CTRL [-o json]` -> SanitizeLog (JSON or the normal text)."""
    if text.lstrip().startswith("{"):
        return _sanitize_log_json(_json(text, "nvme sanitize-log"))
    return _sanitize_log_text(text)


def _seconds(value: int | None) -> int | None:
    return None if value is None or value == NOT_REPORTED else value


def _sanitize_log_json(d: dict[str, Any]) -> SanitizeLog:
    body = d if "sprog" in d else next((v for v in d.values() if isinstance(v, dict)), {})
    if "sprog" not in body:
        raise DeviceError("nvme sanitize-log: no sanitize log in the JSON (no 'sprog')")
    status, gde, passes = _sstat_json(body.get("sstat"))
    return SanitizeLog(
        status=status, sprog=int(body["sprog"]), global_data_erased=gde, passes=passes,
        cdw10=_opt_int(body.get("cdw10_info")),
        overwrite_seconds=_seconds(_opt_int(body.get("time_over_write"))),
        block_erase_seconds=_seconds(_opt_int(body.get("time_block_erase"))),
        crypto_erase_seconds=_seconds(_opt_int(body.get("time_crypto_erase"))))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


_STATUS_TEXT = re.compile(r"^\((\d+)\)")


def _sstat_json(sstat: Any) -> tuple[int, bool | None, int]:
    """SSTAT as nvme-cli 2.x prints it: an object with global_erased,
    no_cmplted_passes and "(N) text" (some versions key that text by itself)."""
    if isinstance(sstat, int):
        return sstat & 0x7, bool(sstat & 0x100), (sstat >> 3) & 0x1F
    if not isinstance(sstat, dict):
        raise DeviceError(f"nvme sanitize-log: unexpected SSTAT {sstat!r}")
    texts = [str(v) for v in sstat.values()] + [str(k) for k in sstat]
    found = next((m for t in texts if (m := _STATUS_TEXT.match(t))), None)
    if found is None:
        raise DeviceError(f"nvme sanitize-log: no sanitize status in SSTAT {sstat!r}")
    gde = sstat.get("global_erased")
    return (int(found.group(1)), None if gde is None else bool(int(gde)),
            int(sstat.get("no_cmplted_passes", 0)))


def _text_field(text: str, label: str) -> int | None:
    m = re.search(rf"^[ \t]*{label}\s*:\s*(0x[0-9a-fA-F]+|\d+)", text, re.M)
    return int(m.group(1), 0) if m else None


def _sanitize_log_text(text: str) -> SanitizeLog:
    """The normal output: "Sanitize Status (SSTAT) :  0x101" and so on. SSTAT is
    the raw register here (nvme-cli 2.4 printed it masked to bits 2:0: then the
    Global Data Erased bit reads 0)."""
    sprog = _text_field(text, r"Sanitize Progress\s+\(SPROG\)")
    sstat = _text_field(text, r"Sanitize Status\s+\(SSTAT\)")
    if sprog is None or sstat is None:
        raise DeviceError("nvme sanitize-log: no SPROG/SSTAT lines in the output")
    return SanitizeLog(
        status=sstat & 0x7, sprog=sprog, global_data_erased=bool(sstat & 0x100),
        passes=(sstat >> 3) & 0x1F,
        cdw10=_text_field(text, r"Sanitize Command Dword 10 Information\s+\(SCDW10\)"),
        overwrite_seconds=_seconds(_text_field(text, r"Estimated Time For Overwrite")),
        block_erase_seconds=_seconds(_text_field(text, r"Estimated Time For Block Erase")),
        crypto_erase_seconds=_seconds(_text_field(text, r"Estimated Time For Crypto Erase")))
