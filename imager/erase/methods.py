"""Named overwrite methods and the plan built from them.

A method is data: an ordered list of passes. `make_plan` resolves it (random
seeds drawn now, verification seed drawn now) into an ErasePlan value that is
stored with the job, so a resumed job writes exactly the same bytes and a
verifier can regenerate them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from imager.errors import UsageError
from imager.model import ErasePlan, MethodStep, PassKind, PassSpec, VerifyMode

MAX_PATTERN_BYTES = 512
# The edition every citation names. NIST SP 800-88 Rev. 1 (2014) was withdrawn
# when Rev. 2 was published (26 September 2025); Rev. 2 keeps the Clear, Purge
# and Destroy categories. No Rev. 2 section is cited: none could be checked
# against the published text.
NIST = "NIST SP 800-88 Rev. 2"


@dataclass(frozen=True)
class Method:
    name: str
    passes: tuple[str, ...]
    title_fr: str
    title_en: str
    standard: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("nist-clear", ("zero",),
           f"{NIST} Clear : une passe de zéros",
           f"{NIST} Clear: one pass of zeros",
           f"{NIST} Clear (overwrite, single pass, fixed value)"),
    Method("random", ("random",),
           "Une passe aléatoire (AES-256-CTR)",
           "One random pass (AES-256-CTR)",
           f"{NIST} Clear (overwrite, single pass, random)"),
    Method("random-zero", ("random", "zero"),
           "Une passe aléatoire puis une passe de zéros",
           "One random pass then one pass of zeros",
           f"{NIST} Clear (overwrite, two passes)"),
    Method("dod-3pass", ("zero", "ones", "random"),
           "DoD 5220.22-M, 3 passes (0x00, 0xFF, aléatoire)",
           "DoD 5220.22-M, 3 passes (0x00, 0xFF, random)",
           f"DoD 5220.22-M (1995 edition) 8-306 (d), 3 passes — overwrite; {NIST} Clear"),
)}

_PLAIN_PASSES: dict[str, PassKind] = {"zero": "zero", "ones": "ones", "random": "random"}
_PATTERN_RE = re.compile(r"^pattern:([0-9a-fA-F]+)$")


def parse_pass(token: str) -> PassSpec:
    """'zero' | 'ones' | 'random' | 'pattern:HEX' -> PassSpec (seed not yet drawn)."""
    token = token.strip()
    if token in _PLAIN_PASSES:
        return PassSpec(kind=_PLAIN_PASSES[token])
    m = _PATTERN_RE.match(token)
    if m and len(m.group(1)) % 2 == 0 and len(m.group(1)) // 2 <= MAX_PATTERN_BYTES:
        return PassSpec(kind="pattern", pattern=m.group(1).lower())
    raise UsageError(
        f"bad pass {token!r}: use zero, ones, random or pattern:HEX with an even number "
        f"of hex digits (at most {MAX_PATTERN_BYTES} bytes), e.g. pattern:55aa")


def resolve(name: str) -> tuple[tuple[PassSpec, ...], str]:
    """A named method, or a comma-separated pass list, -> (passes, standard)."""
    if name in METHODS:
        m = METHODS[name]
        return tuple(parse_pass(p) for p in m.passes), m.standard
    try:
        return tuple(parse_pass(p) for p in name.split(",")), "custom overwrite"
    except UsageError as exc:
        known = ", ".join(sorted(METHODS))
        raise UsageError(f"unknown method {name!r}: use one of {known}, or a pass list "
                         f"such as zero,random,pattern:55aa ({exc})") from exc


def overwrite_step(method: str) -> MethodStep:
    """A host overwrite method as a plan step, random seeds drawn now."""
    passes, standard = resolve(method)
    seeded = tuple(
        PassSpec(kind=p.kind, pattern=p.pattern, seed=os.urandom(32).hex())
        if p.kind == "random" else p
        for p in passes
    )
    return MethodStep(method=method, passes=seeded, standard=standard)


def check_verify(verify: str) -> None:
    if verify not in ("full", "sample", "none"):
        raise UsageError(f"bad verification {verify!r}: use full, sample or none")


def make_plan(method: str, verify: VerifyMode) -> ErasePlan:
    """Resolve an overwrite method into a one-step plan with fresh seeds."""
    check_verify(verify)
    return ErasePlan(steps=(overwrite_step(method),), verify=verify,
                     verify_seed=os.urandom(16).hex())
