"""Canonical JSON: the exact bytes that are hashed and signed.

Follows RFC 8785 (JSON Canonicalization Scheme) for the values a record holds:
object keys sorted by UTF-16 code units, no insignificant whitespace, strings
as UTF-8 with only the escapes JSON requires, integers as digits, finite
floats in their shortest round-trip form (an integral float prints as an
integer). Anyone can recompute it in another language.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from imager.errors import UsageError


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise UsageError(f"canonical JSON cannot hold {value!r}: use a finite number")
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:  # ECMAScript form: 1e-07 -> 1e-7, 1e+21 -> 1e+21
        mant, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mant}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


def _encode(value: Any, out: list[str]) -> None:
    if value is None or value is True or value is False:
        out.append(json.dumps(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if not isinstance(key, str):
                raise UsageError(f"canonical JSON keys must be text, not {key!r}")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise UsageError(f"canonical JSON cannot hold a {type(value).__name__}: {value!r}")


def canonical_bytes(value: Any) -> bytes:
    """The RFC 8785 bytes of `value` (dicts, lists, text, numbers, booleans, null)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """sha256 (hex) of the canonical bytes of `value`."""
    return sha256_hex(canonical_bytes(value))
