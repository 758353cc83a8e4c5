"""What a station pushes to the network's portal, on the wire: one model per part,
read by the portal with the same models the station builds them with.

Every request is a POST whose body is one of these JSON objects, signed as a whole
with the station key (imager.protocol.proof, scheme PUSH_SCHEME). Its CHAIN header
carries the station's certificate chain (base64 of the PEM texts, the station
certificate first, then its issuers up to the network CA): the portal accepts only
a chain to the network CA, and a proof by the key that chain certifies. Both are
checked before the body is parsed.

- STATE_PATH: what the portal holds of this station (its ledger's head, the digest
  of each donation it has): where a push starts from.
- PUSH_PATH: a batch of ledger entries with the signed head of the batch's last
  entry and each new entry's files (the signed JSON, the PDF, a donation's CSV),
  and/or donations with their drives' states. The portal checks everything before
  it stores anything, and answers the head it holds: the station's cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

FORMAT = "imager-push/1"
STATE_PATH = "/api/portal/v1/state"
PUSH_PATH = "/api/portal/v1/push"
HEALTH_PATH = "/api/portal/v1/health"
CHAIN = "X-Imager-Chain"
MAX_CHAIN = 16 << 10       # bytes of PEM in the header
MAX_ENTRIES = 500          # ledger entries in one push
MAX_DONATIONS = 500        # donations in one push
Text = str


class _Strict(BaseModel):
    """Unknown fields are refused: a field the portal does not read is a mistake."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Signed(_Strict):
    """Every request's body: its format (a state request is this alone)."""

    format: Literal["imager-push/1"] = "imager-push/1"


class Files(_Strict):
    """The files of one issued document: the signed JSON file (its exact text), the PDF
    and a donation's CSV (base64), as the station filed them."""

    signed: Text = Field(max_length=4 << 20)
    pdf: Text | None = Field(default=None, max_length=40 << 20)
    csv: Text | None = Field(default=None, max_length=16 << 20)


class Entry(_Strict):
    """A ledger entry as the station's ledger holds it (imager.certify.ledger)."""

    seq: StrictInt
    at: StrictStr = Field(max_length=40)
    kind: StrictStr = Field(max_length=40)
    doc_id: StrictStr = Field(max_length=128)
    json_sha256: StrictStr = Field(max_length=64)
    pdf_sha256: StrictStr | None = Field(max_length=64)
    signer: StrictStr = Field(max_length=80)
    prev: StrictStr = Field(max_length=64)
    hash: StrictStr = Field(max_length=64)


class LedgerBatch(_Strict):
    """Ledger entries (in order, each as the ledger holds it) and the signed head
    file (imager/ledger-head/1) of the last of them."""

    entries: list[Entry] = Field(max_length=MAX_ENTRIES)
    head: Text = Field(max_length=64 << 10)


class Donor(_Strict):
    """Who gave, as much as the portal needs: the station's donor number, the kind, and
    the name and SIRET of an organisation (a private person's name never leaves the
    station)."""

    ref: str = Field(max_length=64)
    kind: str = Field(max_length=20)
    name: str | None = Field(default=None, max_length=200)
    siret: str | None = Field(default=None, max_length=20)


class DriveState(_Strict):
    identity: str = Field(max_length=300)     # the station's key for the drive
    model: str | None = Field(default=None, max_length=200)
    serial: str | None = Field(default=None, max_length=200)
    state: str = Field(max_length=20)         # imager.registry.lifecycle
    documents: list[str] = Field(default_factory=list, max_length=100)
    # the laptop it was in, when it came in one: donors list laptops, not drives
    machine_model: str | None = Field(default=None, max_length=200)
    machine_serial: str | None = Field(default=None, max_length=200)


class DonationState(_Strict):
    reference: str = Field(min_length=1, max_length=64)
    donor: Donor
    received_on: date
    intake_site: str | None = Field(default=None, max_length=200)
    documents: list[str] = Field(default_factory=list, max_length=100)   # DON-…
    drives: list[DriveState] = Field(default_factory=list, max_length=5000)


class Push(Signed):
    ledger: LedgerBatch | None = None
    documents: dict[str, Files] = Field(default_factory=dict, max_length=MAX_ENTRIES)
    donations: list[DonationState] = Field(default_factory=list, max_length=MAX_DONATIONS)


def digest(donation: DonationState) -> str:
    """The sha256 of a donation's state (sorted JSON): unchanged, it is not sent again."""
    text = json.dumps(donation.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def body(request: BaseModel) -> bytes:
    """The bytes of a request, as signed and sent."""
    return request.model_dump_json().encode("utf-8")


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.S)


def chain_header(pems: list[str]) -> str:
    """The CHAIN header's value for the certificates `pems` (PEM texts)."""
    return base64.b64encode("".join(pems).encode("ascii")).decode("ascii")


def read_chain(value: str | None) -> tuple[str, ...]:
    """The PEM texts of a CHAIN header (ValueError saying what is wrong)."""
    if not value:
        raise ValueError(f"no {CHAIN} header: a station sends its certificate chain")
    if len(value) > MAX_CHAIN * 4 // 3 + 4:
        raise ValueError(f"{CHAIN} is too long (at most {MAX_CHAIN} bytes of PEM)")
    try:
        text = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{CHAIN} is not base64 of PEM certificates ({exc})") from exc
    pems = tuple(_PEM.findall(text))
    if not pems or len(pems) > 8:
        raise ValueError(f"{CHAIN} must hold one to eight PEM certificates, the station's "
                         "first")
    return pems
