"""Triage: propose an orientation for a machine (reuse, parts, recycling) from its
inventory and the network's rules (`profiles/triage.yaml`); the technician confirms.

Rules are data. Each names a measure taken from the inventory (`ram_bytes`,
`battery_wear`...), compares it to a threshold, and either pushes the machine
towards an orientation or only adds a note ("remplacer la batterie"). The
proposal is the worst orientation among the rules that fired (recycling > parts >
reuse); with none fired, reuse. A measure the inventory could not take (None)
never lets a rule pass in silence: it becomes a note asking for a check by hand.

Everything here is pure except `load_rules`, which reads the file. The rules
file is validated as a whole: every problem is reported with its place
(`triage.yaml:40: rules[2].threshold`) and what is allowed there.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from imager import yamldoc
from imager.inventory.machine import MachineInventory
from imager.model import Note

SHIPPED = Path(__file__).resolve().parents[2] / "profiles" / "triage.yaml"
Orientation = Literal["reuse", "parts", "recycling"]
ORIENTATIONS: tuple[Orientation, ...] = ("reuse", "parts", "recycling")   # from best to worst
OUTCOMES = (*ORIENTATIONS, "note")
TOP_KEYS = {"name", "version", "rules"}
RULE_KEYS = {"id", "measure", "op", "threshold", "outcome", "message", "only_if"}
PLACEHOLDERS = {"value", "threshold"}
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
GIB = 1 << 30
_SIZE_UNITS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
               "kio": 1 << 10, "mio": 1 << 20, "gio": 1 << 30, "tio": 1 << 40}

Kind = Literal["bytes", "count", "fraction", "bool"]
Value = int | float | bool
Lang = Literal["fr", "en"]


# --- measures -------------------------------------------------------------------------

def _worst_wear(inv: MachineInventory) -> float | None:
    known = [b.wear for b in inv.batteries if b.wear is not None]
    return max(known) if known else None


def _smart_failed(inv: MachineInventory) -> int | None:
    """Failed internal drives; when none failed, unknown if one could not be asked."""
    health = [d.smart_health for d in inv.internal_drives]
    failed = health.count("failed")
    return None if not failed and "unknown" in health else failed


@dataclass(frozen=True)
class Measure:
    """A figure triage reads from an inventory, with its names in both languages."""

    name: str
    kind: Kind
    label_fr: str
    label_en: str
    get: Callable[[MachineInventory], Value | None]


MEASURES: dict[str, Measure] = {m.name: m for m in (
    Measure("ram_bytes", "bytes", "mémoire vive", "RAM", lambda i: i.ram_bytes),
    Measure("cpu_threads", "count", "fils d'exécution du processeur", "CPU threads",
            lambda i: i.cpu.threads),
    Measure("cpu_cores", "count", "cœurs du processeur", "CPU cores", lambda i: i.cpu.cores),
    Measure("cpu_64bit", "bool", "processeur 64 bits", "64-bit CPU", lambda i: i.cpu.is_64bit),
    Measure("battery_present", "bool", "batterie présente", "battery present",
            lambda i: bool(i.batteries)),
    Measure("battery_count", "count", "nombre de batteries", "battery count",
            lambda i: len(i.batteries)),
    Measure("battery_wear", "fraction", "usure de la batterie (la plus usée)",
            "battery wear (most worn)", _worst_wear),
    Measure("portable", "bool", "ordinateur portable", "portable computer",
            lambda i: i.machine.portable),
    Measure("drive_count", "count", "disques internes", "internal drives",
            lambda i: len(i.internal_drives)),
    Measure("smart_failed_count", "count", "disques en échec SMART", "drives failing SMART",
            _smart_failed),
    Measure("wireless_present", "bool", "carte wifi présente", "wireless card present",
            lambda i: any(n.kind == "wireless" for n in i.network)),
)}


def measures(inv: MachineInventory) -> dict[str, Value | None]:
    """Every measure of `inv` by name; None where the inventory does not know."""
    return {name: m.get(inv) for name, m in MEASURES.items()}


def format_value(kind: Kind, value: Value, lang: Lang) -> str:
    """A measured value or threshold as a person reads it: '4 Gio' / '4 GiB', '45 %' / '45%'."""
    if kind == "bool":
        return ("oui" if value else "non") if lang == "fr" else ("yes" if value else "no")
    if kind == "fraction":
        return f"{value * 100:.0f} %" if lang == "fr" else f"{value * 100:.0f}%"
    if kind == "bytes":
        gib = value / GIB
        text = f"{gib:.0f}" if gib.is_integer() else f"{gib:.1f}"
        return f"{text.replace('.', ',')} Gio" if lang == "fr" else f"{text} GiB"
    return str(value)


# --- rules ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """`measure op threshold` -> outcome, with a message in both languages
    ({value} and {threshold} are replaced). `only_if` names measures that must
    have the given values for the rule to apply (e.g. {portable: true})."""

    id: str
    measure: str
    op: str
    threshold: Value
    outcome: str                      # reuse, parts, recycling or note
    message_fr: str
    message_en: str
    only_if: tuple[tuple[str, Value], ...] = ()

    def holds(self, value: Value) -> bool:
        """Whether the condition is true for `value`."""
        return OPERATORS[self.op](value, self.threshold)

    def message(self, value: Value) -> Note:
        """The rule's message with the measured value and the threshold substituted."""
        kind = MEASURES[self.measure].kind
        messages: tuple[tuple[str, Lang], ...] = ((self.message_fr, "fr"), (self.message_en, "en"))
        return Note(*(template.format(value=format_value(kind, value, lang),
                                      threshold=format_value(kind, self.threshold, lang))
                      for template, lang in messages))


@dataclass(frozen=True)
class TriageRules:
    """A validated rules file, naming itself (name, version, SHA-256 of the file)."""

    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str = ""
    digest: str = ""

    @property
    def label(self) -> str:
        return yamldoc.label(self.name, self.version, self.digest)


RuleErrors = yamldoc.Problems
_text = yamldoc.text
KIND = yamldoc.Kind("triage rules", plural=True, missing_fix="give an existing file")


def parse_size(text: str) -> int | None:
    """'4 GiB', '512 MiB', '4 Gio' -> bytes; None if it is not such a size."""
    m = re.fullmatch(r"\s*(\d+(?:[.,]\d+)?)\s*([KMGT]i[Bo]|B)\s*", text, re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1).replace(",", ".")) * _SIZE_UNITS[m.group(2).lower()])


def _threshold(raw: object, kind: Kind, where: str, errors: RuleErrors) -> Value | None:
    """A threshold fitting the measure's kind, or None with the problem recorded."""
    number = raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        errors.add(where, f"expected true or false, not {raw!r}")
    elif kind == "bytes":
        size = parse_size(raw) if isinstance(raw, str) else number
        if size is not None:
            return size
        errors.add(where, f"expected a number of bytes or a size such as 4 GiB, not {raw!r}")
    elif kind == "fraction":
        if number is not None and 0 <= number <= 1:
            return number
        errors.add(where, f"expected a number between 0 and 1 (0.5 = 50 %), not {raw!r}")
    elif number is not None and float(number).is_integer():
        return int(number)
    else:
        errors.add(where, f"expected a whole number, not {raw!r}")
    return None


def _template(raw: Any, where: str, errors: RuleErrors) -> str | None:
    text = _text(raw)
    if text is None:
        errors.add(where, "missing: give the message shown to the technician")
        return None
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        errors.add(where, f"bad braces ({exc}): write {{value}} or {{threshold}}, "
                          "and {{ }} for a literal brace")
        return None
    for field in sorted(fields - PLACEHOLDERS):
        errors.add(where, f"unknown placeholder {{{field}}} (use {{value}} or {{threshold}})")
    return text if fields <= PLACEHOLDERS else None


def _measure(raw: Any, where: str, errors: RuleErrors) -> Measure | None:
    if isinstance(raw, str) and raw in MEASURES:
        return MEASURES[raw]
    errors.add(where, f"unknown measure {raw!r} (known: {', '.join(MEASURES)})")
    return None


def _op(raw: Any, kind: Kind | None, where: str, errors: RuleErrors) -> str | None:
    if raw not in OPERATORS:
        errors.add(where, f"expected one of {' '.join(OPERATORS)} (quoted in YAML: "
                          f"op: \"<\"), not {raw!r}")
        return None
    if kind == "bool" and raw not in ("==", "!="):
        errors.add(where, f"{raw} compares numbers: a yes/no measure takes == or !=")
        return None
    return str(raw)


def _only_if(raw: Any, where: str, errors: RuleErrors) -> tuple[tuple[str, Value], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        errors.add(where, "expected a mapping of measure -> value, e.g. {portable: true}")
        return ()
    out = []
    for name, value in raw.items():
        m = _measure(name, f"{where}.{name}", errors)
        v = _threshold(value, m.kind, f"{where}.{name}", errors) if m else None
        if m and v is not None:
            out.append((m.name, v))
    return tuple(out)


def _message(raw: Any, where: str, errors: RuleErrors) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict):
        errors.add(where, "expected {fr: TEXT, en: TEXT}")
        raw = {}
    return (_template(raw.get("fr"), f"{where}.fr", errors),
            _template(raw.get("en"), f"{where}.en", errors))


def _rule(raw: Any, where: str, errors: RuleErrors) -> Rule | None:
    if not isinstance(raw, dict):
        errors.add(where, "expected a rule: {id, measure, op, threshold, outcome, message}")
        return None
    for extra in sorted(set(raw) - RULE_KEYS):
        errors.add(where, f"unknown key {extra!r} (allowed: {', '.join(sorted(RULE_KEYS))})")
    rule_id = _text(raw.get("id"))
    if rule_id is None:
        errors.add(f"{where}.id", "missing: give the rule a short name (e.g. ram-minimum)")
    m = _measure(raw.get("measure"), f"{where}.measure", errors)
    op = _op(raw.get("op"), m.kind if m else None, f"{where}.op", errors)
    threshold = _threshold(raw.get("threshold"), m.kind, f"{where}.threshold", errors) \
        if m else None
    outcome = raw.get("outcome")
    if outcome not in OUTCOMES:
        errors.add(f"{where}.outcome", f"expected one of {', '.join(OUTCOMES)}, not {outcome!r}")
    fr, en = _message(raw.get("message"), f"{where}.message", errors)
    only_if = _only_if(raw.get("only_if"), f"{where}.only_if", errors)
    if (rule_id is None or m is None or op is None or threshold is None or fr is None
            or en is None or outcome not in OUTCOMES):
        return None
    return Rule(str(rule_id), m.name, str(op), threshold, str(outcome), str(fr), str(en),
                only_if)


def _rules(raw: Any, errors: RuleErrors) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        errors.add("rules", "expected a non-empty list of rules")
        return ()
    rules: dict[str, Rule] = {}
    for i, item in enumerate(raw):
        rule = _rule(item, f"rules[{i}]", errors)
        if rule is not None and rule.id in rules:
            errors.add(f"rules[{i}].id", f"{rule.id!r} is used twice: rule ids must be unique")
        elif rule is not None:
            rules[rule.id] = rule
    return tuple(rules.values())


def parse_rules(text: str, *, source: str = "<triage rules>") -> TriageRules:
    """Validate a rules document; raise UsageError listing every problem with its place."""
    document = KIND.document(text, source)
    raw = document.value
    errors = RuleErrors(document=document)
    name, version = KIND.header(raw, TOP_KEYS, errors)
    rules = _rules(raw.get("rules"), errors)
    KIND.check(errors, source)
    return TriageRules(name, version, rules, source, yamldoc.sha256(text))


def load_rules(path: Path | str | None = None) -> TriageRules:
    """The rules at `path`, else those shipped in profiles/triage.yaml."""
    text, where = KIND.read(path, SHIPPED)
    return parse_rules(text, source=where)


# --- the proposal ---------------------------------------------------------------------

@dataclass(frozen=True)
class FiredRule:
    """A rule whose condition held, with the value that made it fire."""

    rule_id: str
    measure: str
    value: Value
    outcome: str
    message_fr: str
    message_en: str


@dataclass(frozen=True)
class Proposal:
    """What triage proposes; the technician confirms or overrides it."""

    orientation: Orientation
    reasons: tuple[FiredRule, ...] = ()
    notes: tuple[Note, ...] = ()
    unknown: tuple[str, ...] = ()     # measures that could not be taken
    rules: str = ""                   # label of the rules used

    @property
    def complete(self) -> bool:
        """False when some rule could not be checked (see notes)."""
        return not self.unknown

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"orientation": self.orientation, "rules": self.rules,
                "reasons": [dataclasses.asdict(r) for r in self.reasons],
                "notes": [{"fr": n.fr, "en": n.en} for n in self.notes],
                "unknown": list(self.unknown), "complete": self.complete}


def _check(rule: Rule, values: dict[str, Value | None]) -> tuple[FiredRule | None, list[str]]:
    """(the fired rule or None, the measures it needed but could not have)."""
    unknown = [name for name, _ in rule.only_if if values[name] is None]
    if unknown:
        return None, unknown
    if any(values[name] != want for name, want in rule.only_if):
        return None, []     # does not apply to this machine (e.g. not a portable)
    value = values[rule.measure]
    if value is None:
        return None, [rule.measure]
    if not rule.holds(value):
        return None, []
    text = rule.message(value)
    return FiredRule(rule.id, rule.measure, value, rule.outcome, text.fr, text.en), []


def _unknown_note(measure: str, rule_ids: list[str]) -> Note:
    m = MEASURES[measure]
    ids, plural = ", ".join(rule_ids), "s" if len(rule_ids) > 1 else ""
    return Note(f"{m.label_fr} : inconnu, vérifier à la main (règle{plural} {ids})",
                f"{m.label_en}: unknown, check by hand (rule{plural} {ids})")


def propose(inv: MachineInventory, rules: TriageRules) -> Proposal:
    """Apply `rules` to `inv`: the worst orientation among fired rules (reuse if none),
    every fired rule as a reason, and a note per measure that could not be taken."""
    values = measures(inv)
    fired: list[FiredRule] = []
    unknown: dict[str, list[str]] = {}
    for rule in rules.rules:
        hit, missing = _check(rule, values)
        fired += [hit] if hit else []
        for name in missing:
            unknown.setdefault(name, []).append(rule.id)
    pushed = {r.outcome for r in fired}
    worst: Orientation = max((o for o in ORIENTATIONS if o in pushed), key=ORIENTATIONS.index,
                             default="reuse")
    return Proposal(orientation=worst, reasons=tuple(fired),
                    notes=tuple(_unknown_note(m, ids) for m, ids in unknown.items()),
                    unknown=tuple(unknown), rules=rules.label)
