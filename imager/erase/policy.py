"""The erase policy: which methods, in which order, for each medium.

`profiles/erase-policy.yaml` (or IMAGER_ERASE_POLICY) is read once and
validated as a whole: every problem is reported with its place in the file
(`erase-policy.yaml:31: media.nvme[2]`) and what is allowed there, so the file
can be fixed in one go. The loaded value names itself (name, version, SHA-256 of the file) so a
plan and a certificate say exactly which policy chose the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imager import yamldoc
from imager.erase import catalogue
from imager.erase.methods import METHODS
from imager.model import Note, SanitizationClass, VerifyMode

SHIPPED = Path(__file__).resolve().parents[2] / "profiles" / "erase-policy.yaml"
TOP_KEYS = {"name", "version", "verify", "ata_unfreeze", "media"}
ENTRY_KEYS = {"method", "class", "basis"}
MEDIUM_KEYS = {"methods", "advice"}


@dataclass(frozen=True)
class PolicyMethod:
    name: str
    sanitization_class: SanitizationClass | None = None   # None: the catalogue's class
    basis: str | None = None                              # why the policy raises it


@dataclass(frozen=True)
class MediumRule:
    methods: tuple[PolicyMethod, ...]
    advice: Note | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    verify: VerifyMode
    unfreeze: str
    media: dict[str, MediumRule] = field(default_factory=dict)
    source: str = ""
    digest: str = ""

    @property
    def label(self) -> str:
        return yamldoc.label(self.name, self.version, self.digest)


PolicyErrors = yamldoc.Problems
_text = yamldoc.text
KIND = yamldoc.Kind("erase policy", plural=False,
                    missing_fix="give an existing file (--policy FILE or IMAGER_ERASE_POLICY)")


def _mapping(raw: Any, where: str, *, shorthand: type, key: str, allowed: set[str],
             expected: str, errors: PolicyErrors) -> dict[str, Any] | None:
    """`raw` as a mapping with only `allowed` keys; a bare `shorthand` value
    stands for {key: value}."""
    if isinstance(raw, shorthand):
        raw = {key: raw}
    if not isinstance(raw, dict):
        errors.add(where, f"expected {expected}")
        return None
    for extra in sorted(set(raw) - allowed):
        errors.add(where, f"unknown key {extra!r} (allowed: {', '.join(sorted(allowed))})")
    return raw


def _entry(raw: Any, where: str, medium: str, errors: PolicyErrors) -> PolicyMethod | None:
    raw = _mapping(raw, where, shorthand=str, key="method", allowed=ENTRY_KEYS, errors=errors,
                   expected="a method name or {method: NAME, class: ..., basis: ...}")
    if raw is None:
        return None
    name = _text(raw.get("method"))
    if name is None or not catalogue.is_known(name):
        known = ", ".join(sorted(catalogue.FIRMWARE) + sorted(METHODS))
        errors.add(where, f"unknown method {raw.get('method')!r}: use one of {known}, "
                          "or a pass list such as zero,random")
        return None
    if medium in catalogue.ALL_MEDIA and medium not in catalogue.media_of(name):
        errors.add(where, f"{name} cannot run on {medium} drives (it runs on "
                          f"{', '.join(sorted(catalogue.media_of(name)))})")
    cls, basis = raw.get("class"), _text(raw.get("basis"))
    if cls not in (None, "clear", "purge"):
        errors.add(where, f"class must be clear or purge, not {cls!r}")
        cls = None
    if cls == "purge" and basis is None and catalogue.class_on(name, medium) == "clear":
        errors.add(where, f"{name} is Clear on {medium} drives: raising it to purge needs "
                          "a `basis:` saying why (it is printed on every plan and report)")
    return PolicyMethod(name, cls, basis)


def _medium(raw: Any, medium: str, errors: PolicyErrors) -> MediumRule | None:
    where = f"media.{medium}"
    raw = _mapping(raw, where, shorthand=list, key="methods", allowed=MEDIUM_KEYS, errors=errors,
                   expected="a list of methods, or {methods: [...], advice: {fr, en}}")
    if raw is None:
        return None
    items = raw.get("methods")
    if not isinstance(items, list) or not items:
        errors.add(where, "needs at least one method")
        return None
    methods = [_entry(x, f"{where}[{i}]", medium, errors) for i, x in enumerate(items)]
    return MediumRule(tuple(m for m in methods if m), _advice(raw.get("advice"), where, errors))


def _advice(raw: Any, where: str, errors: PolicyErrors) -> Note | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not _text(raw.get("fr")) or not _text(raw.get("en")):
        errors.add(f"{where}.advice", "expected {fr: TEXT, en: TEXT}, both non-empty")
        return None
    return Note(_text(raw["fr"]) or "", _text(raw["en"]) or "")


def _media(raw: Any, errors: PolicyErrors) -> dict[str, MediumRule]:
    if not isinstance(raw, dict):
        errors.add("media", "expected a mapping of medium -> methods")
        return {}
    for key in sorted(set(raw) - set(catalogue.MEDIA)):
        errors.add(f"media.{key}", f"unknown medium (known: {', '.join(catalogue.MEDIA)})")
    for key in catalogue.MEDIA:
        if key not in raw:
            errors.add(f"media.{key}", "missing: every medium needs its methods")
    rules = {k: _medium(v, k, errors) for k, v in raw.items() if k in catalogue.MEDIA}
    return {k: r for k, r in rules.items() if r is not None}


def parse(text: str, *, source: str = "<policy>") -> Policy:
    """Validate a policy document; raise UsageError listing every problem."""
    document = KIND.document(text, source)
    raw = document.value
    errors = PolicyErrors(document=document)
    name, version = KIND.header(raw, TOP_KEYS, errors)
    verify = raw.get("verify", "full")
    if verify not in ("full", "sample"):
        errors.add("verify", f"expected full or sample, not {verify!r}")
    unfreeze = raw.get("ata_unfreeze", "never")
    if unfreeze not in ("never", "suspend"):
        errors.add("ata_unfreeze", f"expected never or suspend, not {unfreeze!r}")
    media = _media(raw.get("media"), errors)
    KIND.check(errors, source)
    return Policy(name, version, verify, unfreeze, media, source, yamldoc.sha256(text))


def load(path: Path | str | None = None) -> Policy:
    """The policy at `path`, else the one shipped in profiles/."""
    text, where = KIND.read(path, SHIPPED)
    return parse(text, source=where)
