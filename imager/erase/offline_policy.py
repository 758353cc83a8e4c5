"""The station's erase policy, signed, for agents that erase with no network.

A laptop booted from a USB stick in a place with no network cannot ask the
station for a plan. The stick then carries the station's **offline kit**: its
erase policy in a signed document (the same envelope as certificates, Ed25519
over RFC 8785 JSON) and its certificate. The agent plans from that policy only
once its signature holds, and verifies every read-back in full (the station
cannot draw a sample's seed after the writes: nobody checks a sample drawn
by the agent itself). At sync the station checks that the policy is one it
signed and plans the drive again from the evidence: a report whose plan
differs is refused.

The certificate on the stick only proves the policy was not altered since the
kit was made; what makes an offline erasure count is the station's own check
at sync.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imager.certify.keys import StationKeys, load_cert, pem
from imager.certify.signing import (
    Checks,
    Trust,
    VerificationFailed,
    read_envelope,
    sign_document,
    verify_envelope,
)
from imager.erase import policy as erase_policy
from imager.erase.policy import Policy
from imager.errors import UsageError
from imager.model import ErasePlan, SkippedMethod

KIND = "erase-policy"
SCHEMA = "imager/erase-policy/1"
KIT_POLICY = "politique-effacement.signed.json"
KIT_CERT = "station.crt"


@dataclass(frozen=True)
class SignedPolicy:
    """A policy the station signed, as read back and checked."""

    policy: Policy
    signed: str                 # the signed file, as written (what the agent sends back)
    issued_at: str


def sign(text: str, keys: StationKeys) -> bytes:
    """The signed policy document for the policy `text` (checked first)."""
    policy = erase_policy.parse(text, source="<offline kit>")
    return sign_document({"schema": SCHEMA, "kind": KIND, "policy": text,
                          "label": policy.label,
                          "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
                          "offline_verify": "full"}, keys)


def read(data: bytes, trust: Trust, *, where: str) -> SignedPolicy:
    """The signed policy in `data`, its signature checked against `trust`; UsageError
    saying what is wrong and what to do."""
    checks = Checks()
    try:
        document = verify_envelope(read_envelope(data, checks), trust, checks)
    except VerificationFailed as exc:
        raise UsageError(f"{where}: politique signée refusée / signed policy refused: {exc}; "
                         "make a new offline kit on the station (imager agent kit DIR)") \
            from exc
    if document.get("kind") != KIND or document.get("schema") != SCHEMA or \
            not isinstance(document.get("policy"), str):
        raise UsageError(f"{where}: not a signed erase policy (kind {document.get('kind')!r}): "
                         "make the offline kit with `imager agent kit DIR`")
    policy = erase_policy.parse(document["policy"], source=where)
    return SignedPolicy(policy, data.decode("utf-8"), str(document.get("issued_at")))


def write_kit(folder: Path, text: str, keys: StationKeys) -> list[Path]:
    """Write the offline kit into `folder` (a USB stick): the signed policy and the
    station's certificate (with its chain)."""
    folder.mkdir(parents=True, exist_ok=True)
    signed, cert = folder / KIT_POLICY, folder / KIT_CERT
    signed.write_bytes(sign(text, keys))
    cert.write_text("".join(pem(c) for c in (keys.station_cert, *keys.chain)))
    return [signed, cert]


def read_kit(folder: Path) -> SignedPolicy:
    """The offline kit in `folder`, checked against the certificate it carries."""
    signed, cert = folder / KIT_POLICY, folder / KIT_CERT
    for path in (signed, cert):
        if not path.is_file():
            raise UsageError(f"{path}: missing from the offline kit: make it on the station "
                             "with `imager agent kit DIR`")
    return read(signed.read_bytes(), Trust(load_cert(cert)), where=str(signed))


def for_offline(plan: ErasePlan) -> ErasePlan:
    """A plan as an offline agent runs it: a sampled verification becomes a full one."""
    return dataclasses.replace(plan, verify="full") if plan.verify == "sample" else plan


def shape(plan: ErasePlan) -> dict[str, object]:
    """What two plans for one drive share when each drew its own random seeds."""
    data = plan.to_dict()
    data["verify_seed"] = None
    for step in data["steps"]:
        for p in step["passes"]:
            p["seed"] = None
    return data


def refused_as(plan: ErasePlan, refused: tuple[SkippedMethod, ...]) -> ErasePlan:
    """`plan` after the drive refused its methods, in order, with the reasons `refused`
    gives (as the runner goes on: imager.jobs.erase._run_plan)."""
    for r in refused:
        plan = plan.refuse(r.reason)
        plan = plan.fallback() or plan
    return plan
