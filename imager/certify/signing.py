"""Signed documents: a record, its Ed25519 signature and the signer's certificate.

The file is the canonical JSON (RFC 8785) of the envelope plus a newline, so
any change to any byte of it is detected: either the bytes are no longer
canonical, or the signature no longer matches.

    {"format": "imager-signed-document/1",
     "document": {...the record...},
     "signature": {"algorithm": "Ed25519", "key": "sha256:<SPKI hash>",
                   "sha256": "<hash of the canonical document>", "value": "<base64>"},
     "certificates": ["<station certificate PEM>", "<its issuers>..."]}

The signature covers the canonical JSON of {"certificates": [...], "document": {...}},
so the certificates that travel with the document cannot be changed either.
The signer's certificate must chain to a trusted certificate with every check of
`chain.validate_chain` (CA flags, path length, key usages, dates).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519

from imager.certify.canonical import canonical_bytes, sha256_hex
from imager.certify.chain import Chain, ChainError, subject, validate_chain
from imager.certify.keys import StationKeys, fingerprint, pem
from imager.errors import UsageError

FORMAT = "imager-signed-document/1"
REISSUE_PDF = ("keys/pdf.crt est réémis sous le certificat de la station au chargement des "
               "clés : relancer la commande, ou la station / keys/pdf.crt is issued again "
               "under the station certificate when the keys are loaded: run the command "
               "again, or restart the station")


class VerificationFailed(Exception):
    """A document failed a check; the message says which and what it means."""


@dataclass
class Checks:
    """What a verification checked, in order, for the person who runs it."""

    lines: list[tuple[bool, str]] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.lines.append((True, text))

    def fail(self, text: str) -> VerificationFailed:
        self.lines.append((False, text))
        return VerificationFailed(text)


def _signed_bytes(document: dict[str, Any], certificates: list[str]) -> bytes:
    """What the signature covers: the document and the certificates that travel with it."""
    return canonical_bytes({"certificates": certificates, "document": document})


def sign_document(document: dict[str, Any], keys: StationKeys) -> bytes:
    """The signed file (bytes) for `document`."""
    certificates = [pem(c) for c in (keys.station_cert, *keys.chain)]
    envelope = {
        "format": FORMAT,
        "document": document,
        "signature": {"algorithm": "Ed25519", "key": keys.fingerprint,
                      "sha256": sha256_hex(canonical_bytes(document)),
                      "value": keys.sign(_signed_bytes(document, certificates))},
        "certificates": certificates,
    }
    return canonical_bytes(envelope) + b"\n"


def check_signing_keys(keys: StationKeys) -> None:
    """Refuse to sign with a certificate chain no verifier would accept (expired, not
    for signing, issued by a non-CA...): the same checks as `Trust.validate`, up to the
    last certificate the station holds, for the station certificate (records, ledger)
    and for the PDF certificate it issued (PAdES signatures)."""
    certs = [keys.station_cert, *keys.chain]
    now = datetime.now(UTC)
    try:
        validate_chain(certs, certs[-1:], now)
    except ChainError as exc:
        raise UsageError(f"les clés de cette station ne peuvent pas signer / this station's "
                         f"keys cannot sign: {exc}") from exc
    try:
        validate_chain([keys.pdf_cert, *certs], certs[-1:], now, renew=REISSUE_PDF)
    except ChainError as exc:
        raise UsageError(f"le certificat PDF de cette station ne peut pas signer / this "
                         f"station's PDF certificate cannot sign: {exc}") from exc


class Trust:
    """The certificates a verifier trusts: the station's, or a network CA."""

    def __init__(self, anchors: list[x509.Certificate]) -> None:
        if not anchors:
            raise ValueError("no trusted certificate")
        self.anchors = anchors
        self._signers: dict[tuple[str, ...], _Signer] = {}   # a handful per verifier

    def describe(self) -> str:
        return ", ".join(a.subject.rfc4514_string() for a in self.anchors)

    def validate(self, certs: list[x509.Certificate]) -> Chain:
        """The chain from `certs[0]` (the signer) to a trusted certificate, checked now
        (`chain.validate_chain`); raises VerificationFailed naming every problem."""
        try:
            return validate_chain(certs, self.anchors, datetime.now(UTC))
        except ChainError as exc:
            raise VerificationFailed(str(exc)) from exc

    def signer_key(self, pems: tuple[str, ...]) -> tuple[ed25519.Ed25519PublicKey, str, str]:
        """The signer's public key, its fingerprint and how it chains to a trusted certificate
        (the chain is checked again once a certificate of it is out of its dates)."""
        signer = self._signers.get(pems)
        if signer is None or not signer.chain.valid_at(datetime.now(UTC)):
            signer = _Signer.of(self.validate(_certificates(pems)))
            if len(self._signers) >= 64:
                self._signers.clear()
            self._signers[pems] = signer
        return signer.key, signer.fingerprint, signer.chain.describe()


@dataclass(frozen=True)
class _Signer:
    chain: Chain
    key: ed25519.Ed25519PublicKey
    fingerprint: str

    @classmethod
    def of(cls, chain: Chain) -> _Signer:
        key = chain.signer.public_key()
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise VerificationFailed(f"le certificat « {subject(chain.signer)} » ne porte pas de "
                                     "clé Ed25519 / the signer certificate does not hold an "
                                     "Ed25519 key: documents are signed with the station key "
                                     "(keys/station.key)")
        return cls(chain, key, fingerprint(chain.signer))


def _certificates(pems: tuple[str, ...]) -> list[x509.Certificate]:
    try:
        certs = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in pems]
        for cert in certs:
            cert.public_key()
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as exc:
        raise VerificationFailed(f"certificat signataire illisible / the signer certificate "
                                 f"cannot be read: {exc}") from exc
    return certs


def _python_canonical(value: Any) -> bytes:
    """json.dumps with sorted keys and no spaces: byte-identical to RFC 8785 for
    every value without floats needing JCS's own number format (our records),
    and ~10x faster than the general encoder."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


class Envelope(dict[str, Any]):
    """A parsed signed file, the encoder its bytes were found to match, and the
    document's bytes: the hash and the signature are checked over those bytes."""

    encode: Callable[[Any], bytes] = staticmethod(canonical_bytes)
    body: bytes | None = None


KEYS = ("certificates", "document", "format", "signature")  # in canonical order


def _assemble(encode: Callable[[Any], bytes], envelope: dict[str, Any], body: bytes) -> bytes:
    """The canonical bytes of an envelope whose document encodes to `body`."""
    return b"".join((b'{"certificates":', encode(envelope["certificates"]), b',"document":',
                     body, b',"format":', encode(envelope["format"]), b',"signature":',
                     encode(envelope["signature"]), b"}\n"))


def read_envelope(data: bytes, checks: Checks) -> Envelope:
    """Parse a signed file and check it is byte-for-byte canonical."""
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise checks.fail(f"JSON illisible / unreadable JSON: {exc}") from exc
    if not isinstance(parsed, dict) or parsed.get("format") != FORMAT:
        raise checks.fail(f"pas un document signé imager / not an imager signed document "
                          f"(format {FORMAT} expected)")
    if sorted(parsed) != list(KEYS):
        raise checks.fail(f"enveloppe incomplète ou augmentée / the envelope must hold exactly "
                          f"{', '.join(KEYS)}")
    envelope = Envelope(parsed)
    for encode in (_python_canonical, canonical_bytes):
        try:
            body = encode(parsed["document"])
            if _assemble(encode, parsed, body) == data:
                envelope.encode, envelope.body = encode, body
                break
        except Exception:  # noqa: BLE001, S112 - a value no encoder accepts: not canonical
            continue
    else:
        raise checks.fail("le fichier a été modifié (octets non canoniques) / the file was "
                          "altered (its bytes are not the canonical form that was signed)")
    checks.ok("forme canonique RFC 8785 intacte / canonical RFC 8785 form intact")
    return envelope


def verify_envelope(envelope: dict[str, Any], trust: Trust, checks: Checks) -> dict[str, Any]:
    """Check the hash and the Ed25519 signature; return the signed document."""
    sig, document = envelope.get("signature"), envelope.get("document")
    if not isinstance(sig, dict) or not isinstance(document, dict):
        raise checks.fail("signature or document missing from the envelope")
    encode = envelope.encode if isinstance(envelope, Envelope) else canonical_bytes
    body = envelope.body if isinstance(envelope, Envelope) and envelope.body is not None \
        else encode(document)
    if sig.get("algorithm") != "Ed25519":
        raise checks.fail(f"algorithme de signature inconnu / unknown signature algorithm "
                          f"{sig.get('algorithm')!r} (Ed25519 expected)")
    if sha256_hex(body) != sig.get("sha256"):
        raise checks.fail(f"empreinte différente / hash mismatch: the document hashes to "
                          f"{sha256_hex(body)}, the signature says {sig.get('sha256')}")
    checks.ok(f"empreinte / hash sha256:{sig['sha256']}")
    pems = envelope.get("certificates")
    if not isinstance(pems, list) or not all(isinstance(p, str) for p in pems):
        raise checks.fail("the envelope's certificates must be a list of PEM texts")
    try:
        key, fpr, how = trust.signer_key(tuple(pems))
    except VerificationFailed as exc:
        raise checks.fail(str(exc)) from exc
    if fpr != sig.get("key"):
        raise checks.fail(f"the signature names the key {sig.get('key')} but the certificate "
                          f"holds {fpr}")
    checks.ok(f"signataire / signer {fpr} — {how}")
    try:
        key.verify(base64.b64decode(str(sig.get("value", "")), validate=True),
                   b'{"certificates":' + encode(pems) + b',"document":' + body + b"}")
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise checks.fail("signature Ed25519 invalide / invalid Ed25519 signature") from exc
    checks.ok("signature Ed25519 valide / valid Ed25519 signature")
    return document
