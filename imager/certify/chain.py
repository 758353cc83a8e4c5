"""Certificate chains: may a verifier trust the certificate that signed a file?

`validate_chain` is the one check every signed file goes through: JSON records,
donation CSVs (through their record), ledger heads and exports, image
manifests (`signing.Trust.signer_key`) and PDFs (`pades.verify_pdf`, on top of
pyHanko's own validation). For every certificate from the signer up to the
trusted one it checks:

- each certificate is issued by the next (name and signature); the last one is
  issued by a trusted certificate, or holds a trusted key (then the trusted
  certificate stands for it: a station that renewed its certificate for the
  same key keeps its documents verifiable with the new certificate); when several
  trusted certificates would do (an expired one and its renewal, in any order), the
  one within its dates at the time of the verification is used;
- every issuer: basicConstraints CA:TRUE, keyUsage with keyCertSign, and the
  path length it allows (pathLenConstraint);
- the signer: keyUsage with digitalSignature or nonRepudiation
  (contentCommitment);
- no critical extension other than basicConstraints and keyUsage (one this code
  does not understand must not be ignored, RFC 5280 §4.2);
- the validity dates of every certificate, the trusted one included, at the
  time of the verification.

Why the time of the verification, not the signing time: a signed file carries
no trusted time (a record's issued_at is written by the signer itself, and
whoever stole an expired key would date documents back). pyHanko does the same
for the PDFs (PAdES B-B, no timestamp). The station certificate lasts ten years;
a station renews it for the same key and gives verifiers the new certificate.

Why not pyhanko-certvalidator (which pyHanko uses for the PDFs): its API is
asynchronous only; it does not check a trust anchor's own dates, CA flag or
path length unless asked to derive them from the certificate, and that mode
fails with a TypeError (pyhanko-certvalidator 0.33) as soon as the path holds an
intermediate CA; its messages name positions ("intermediate certificate 1"),
not certificates, in English only. cryptography's verifier (x509.verification)
follows the Web PKI profile, which forbids Ed25519 CA keys: the station's key
issues the PDF certificate. Our chains are one to three certificates of one
profile; the checks below are short and say, in French and English, which
certificate is wrong, why, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from imager.certify.keys import fingerprint, issued_by, within_dates

MAX_DEPTH = 8                     # certificates from the signer to the trusted one
UNDERSTOOD = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE}
RENEW = ("la station renouvelle son certificat pour la même clé (`imager keys csr` puis "
         "`imager keys install`, ou sans AC : déplacer keys/station.crt) et le redonne / the "
         "station renews its certificate for the same key (`imager keys csr` then `imager keys "
         "install`, or without a CA: move keys/station.crt away) and hands out the new one")
RENEW_CA = ("l'autorité doit être renouvelée, puis le certificat de la station émis à nouveau "
            "par elle / the authority must be renewed, then the station certificate issued "
            "again by it (`imager keys csr`, `imager keys install`); verifiers trust the new "
            "authority certificate")


class ChainError(Exception):
    """The signer's certificate chain is not trusted; the message names every problem."""


@dataclass(frozen=True)
class Chain:
    """A validated path: the signer's certificate first, the trusted certificate last."""

    certs: tuple[x509.Certificate, ...]

    @property
    def signer(self) -> x509.Certificate:
        return self.certs[0]

    @property
    def anchor(self) -> x509.Certificate:
        return self.certs[-1]

    @cached_property
    def window(self) -> tuple[datetime, datetime]:
        """When every certificate of the path is within its dates."""
        return (max(c.not_valid_before_utc for c in self.certs),
                min(c.not_valid_after_utc for c in self.certs))

    def valid_at(self, at: datetime) -> bool:
        return self.window[0] <= at <= self.window[1]

    def describe(self) -> str:
        until = self.window[1].date().isoformat()
        if len(self.certs) == 1:
            return f"certificat de confiance / trusted certificate, valable jusqu'au / valid " \
                   f"until {until}"
        return (f"émis par / issued by {subject(self.anchor)} (chaîne de {len(self.certs)} "
                f"certificats : autorités, longueur, usages, dates vérifiés / chain of "
                f"{len(self.certs)} certificates: CA flags, path length, key usages, dates "
                f"checked), valable jusqu'au / valid until {until}")


def subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or f"(sans nom / no subject, {fingerprint(cert)})"


def validate_chain(certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
                   at: datetime, *, renew: str = RENEW) -> Chain:
    """The path from `certs[0]` (the signer) through the other `certs` (its issuers, in
    any order) to one of `anchors`, once every check above passed at `at` (aware);
    `renew` says what to do when the signer's certificate is out of its dates."""
    if not certs:
        raise ChainError("le fichier ne porte aucun certificat signataire / the file carries "
                         "no signer certificate")
    path = _path(certs, anchors, at)
    problems = []
    for i, cert in enumerate(path):
        try:
            problems += _problems(path, i, at, renew)
        except ValueError as exc:      # cryptography parses extensions when first read
            problems.append(f"le certificat « {subject(cert)} » a des extensions illisibles / "
                            f"the certificate {subject(cert)} has unreadable extensions ({exc}): "
                            "ask its authority for a well-formed certificate")
    if problems:
        raise ChainError("; ".join(problems))
    return Chain(tuple(path))


def _best(candidates: Sequence[x509.Certificate], at: datetime) -> x509.Certificate | None:
    """Among trusted certificates that would do (the same key, renewed), the one within
    its dates at `at`, whatever their order; else the one that ends last (its problem is
    the one said)."""
    return max(candidates, default=None,
               key=lambda c: (within_dates(c, at), c.not_valid_after_utc))


def _path(certs: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate],
          at: datetime) -> list[x509.Certificate]:
    path: list[x509.Certificate] = []
    current = certs[0]
    while len(path) < MAX_DEPTH:
        key = fingerprint(current)
        anchor = _best([a for a in anchors if fingerprint(a) == key], at)
        if anchor is not None:
            return [*path, anchor]
        path.append(current)
        issuer = _best([a for a in anchors if issued_by(current, a)], at) or next(
            (c for c in certs[1:] if c not in path and issued_by(current, c)), None)
        if issuer is None:
            break
        current = issuer
    names = ", ".join(subject(a) for a in anchors)
    raise ChainError(
        f"le certificat signataire n'est ni le certificat de confiance ni émis par lui / the "
        f"signer certificate is neither the trusted certificate nor issued by it: trusted "
        f"{names}, signer {subject(certs[0])} ({fingerprint(certs[0])}); give --trust the "
        "certificate of the station that signed, or of its network CA")


def _problems(path: list[x509.Certificate], index: int, at: datetime,
              renew: str) -> list[str]:
    cert = path[index]
    found = _dates(cert, at, renew if index == 0 else RENEW_CA) + _critical(cert)
    if index == 0:
        return found + _signer_usage(cert)
    return found + _issuer(cert, path[index - 1], path[1:index])


def _dates(cert: x509.Certificate, at: datetime, renew: str) -> list[str]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    span = f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    if at > end:
        return [f"le certificat « {subject(cert)} » a expiré le {end:%Y-%m-%d} / the "
                f"certificate {subject(cert)} expired on {end:%Y-%m-%d} (valid {span}): {renew}"]
    if at < start:
        return [f"le certificat « {subject(cert)} » n'est valable qu'à partir du "
                f"{start:%Y-%m-%d %H:%M} UTC / the certificate {subject(cert)} is not valid "
                f"before {start:%Y-%m-%d %H:%M} UTC (valid {span}): check this computer's "
                "date and time"]
    return []


def _critical(cert: x509.Certificate) -> list[str]:
    unknown = [e.oid.dotted_string for e in cert.extensions
               if e.critical and e.oid not in UNDERSTOOD]
    if not unknown:
        return []
    return [f"le certificat « {subject(cert)} » porte une extension critique non prise en "
            f"charge / the certificate {subject(cert)} carries a critical extension this "
            f"verifier does not support ({', '.join(unknown)}): ask its authority for a "
            "certificate without it"]


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _signer_usage(cert: x509.Certificate) -> list[str]:
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and (usage.digital_signature
                                             or usage.content_commitment):
        return []
    why = "keyUsage absent" if usage is None else "keyUsage sans / without digitalSignature, " \
                                                  "nonRepudiation"
    return [f"le certificat « {subject(cert)} » n'est pas fait pour signer des documents / the "
            f"certificate {subject(cert)} may not sign documents ({why}): ask its authority for "
            "a certificate with keyUsage digitalSignature"]


def _issuer(cert: x509.Certificate, issued: x509.Certificate,
            between: list[x509.Certificate]) -> list[str]:
    """Problems of `cert` as the issuer of `issued`, with `between` the CA certificates
    that sit between it and the signer."""
    who = f"« {subject(cert)} » (émetteur de / issuer of {subject(issued)})"
    found = []
    basic = _extension(cert, x509.BasicConstraints)
    if not (isinstance(basic, x509.BasicConstraints) and basic.ca):
        found.append(f"{who} n'est pas une autorité de certification (basicConstraints CA:TRUE "
                     f"absent) / is not a certification authority (no basicConstraints "
                     f"CA:TRUE), so the certificates it issued are not trusted: the station "
                     f"certificate must be issued by the network CA (`imager keys csr`, then "
                     f"`imager keys install`)")
    usage = _extension(cert, x509.KeyUsage)
    if not (isinstance(usage, x509.KeyUsage) and usage.key_cert_sign):
        found.append(f"{who} n'a pas le droit de signer des certificats (keyUsage sans "
                     f"keyCertSign) / may not sign certificates (its keyUsage lacks "
                     f"keyCertSign): ask its authority for a CA certificate with keyCertSign")
    below = sum(1 for c in between if c.subject != c.issuer)   # self-issued ones do not count
    if isinstance(basic, x509.BasicConstraints) and basic.path_length is not None \
            and below > basic.path_length:
        found.append(f"{who} n'autorise que {basic.path_length} autorité(s) intermédiaire(s) "
                     f"sous elle, la chaîne en compte {below} / allows {basic.path_length} "
                     f"intermediate CA(s) below it (pathLenConstraint), the chain has {below}: "
                     "the station certificate must be issued closer to that authority")
    return found
