"""PAdES signatures of the PDFs (pyHanko), and their offline check.

The PDF key is ECDSA P-256 (readable by common PDF readers); its certificate
is issued by the station certificate, so a verifier trusts one certificate.
A PDF verifies when pyHanko finds its signature intact, whole and trusted, and its
signer's certificate chain passes the same checks as the JSON files'
(`chain.validate_chain`: CA flags, path length, key usages, dates).
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from asn1crypto import keys as akeys
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from imager.certify.keys import StationKeys, issued_by
from imager.certify.signing import Checks, Trust, VerificationFailed

with warnings.catch_warnings():
    # pyHanko imports cryptography's DSA key class (for DSA signers, which we never use);
    # cryptography warns about DSA on that import, and every `imager cert verify` printed it.
    warnings.filterwarnings("ignore", message="DSA is deprecated",
                            category=CryptographyDeprecationWarning,
                            module=r"pyhanko\.sign\.signers\.pdf_cms")
    from pyhanko.pdf_utils.generic import ArrayObject, DictionaryObject
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.registry import SimpleCertificateStore

FIELD = "Signature1"

# pyHanko logs each failed validation with its traceback; the verdict says it.
for _name in ("pyhanko", "pyhanko_certvalidator"):
    logging.getLogger(_name).addHandler(logging.NullHandler())


def _acert(cert: x509.Certificate) -> ax509.Certificate:
    return ax509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _signer(keys: StationKeys) -> signers.SimpleSigner:
    key = akeys.PrivateKeyInfo.load(keys.pdf_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    registry = SimpleCertificateStore()   # type: ignore[no-untyped-call]  # untyped __init__
    registry.register_multiple(_acert(c) for c in (keys.station_cert, *keys.chain))
    return signers.SimpleSigner(signing_cert=_acert(keys.pdf_cert), signing_key=key,
                                cert_registry=registry)


def sign_pdf(pdf: bytes, keys: StationKeys, *, reason: str, location: str) -> bytes:
    """`pdf` with a PAdES B-B signature covering the whole file."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    meta = signers.PdfSignatureMetadata(field_name=FIELD, subfilter=SigSeedSubFilter.PADES,
                                        reason=reason, location=location or None)
    out: io.BytesIO = signers.sign_pdf(writer, meta, signer=_signer(keys))
    return out.getvalue()


def _der_length(raw: bytes) -> int:
    """Length of the DER value at the start of `raw` (tag + length + content)."""
    if len(raw) < 2 or raw[0] != 0x30:
        raise ValueError("not a DER SEQUENCE")
    first = raw[1]
    if first < 0x80:
        return 2 + first
    n = first & 0x7F
    return 2 + n + int.from_bytes(raw[2:2 + n], "big")


def _contents_canonical(data: bytes, byte_range: list[int]) -> bool:
    """The unsigned gap holds exactly `<HEX(CMS)000...>` as pyHanko wrote it:
    no other byte can change there without being detected."""
    gap = data[byte_range[1]:byte_range[2]]
    if len(gap) < 2 or gap[:1] != b"<" or gap[-1:] != b">":
        return False
    hexpart = gap[1:-1]
    try:
        raw = bytes.fromhex(hexpart.decode("ascii"))
        used = _der_length(raw)
    except (ValueError, UnicodeDecodeError):
        return False
    return hexpart == raw[:used].hex().upper().encode("ascii") + b"0" * (len(hexpart) - 2 * used)


def _cms_certs(signed_data: Any) -> list[x509.Certificate] | None:
    """The certificates the CMS carries (None: one cannot be read)."""
    try:
        return [x509.load_der_x509_certificate(c.chosen.dump())
                for c in signed_data["certificates"]]
    except ValueError:
        return None


def _embedded_certs_genuine(certs: list[x509.Certificate], trust: Trust) -> bool:
    """Every certificate the CMS carries is a trust anchor or is issued by one of
    the others: the CMS certificate set is not covered by the signature itself."""
    anchors = {a.public_bytes(serialization.Encoding.DER) for a in trust.anchors}
    issuers = [*trust.anchors, *certs]
    for cert in certs:
        if cert.public_bytes(serialization.Encoding.DER) in anchors:
            continue
        if not any(issued_by(cert, i) for i in issuers if i is not cert):
            return False
    return True


def _signer_first(certs: list[x509.Certificate], signer: Any) -> list[x509.Certificate]:
    """`certs` with the PDF signer's certificate (pyHanko's asn1crypto one) first."""
    leaf = x509.load_der_x509_certificate(signer.dump())
    return [leaf, *(c for c in certs if c != leaf)]


def attachments(reader: PdfFileReader) -> dict[str, bytes]:
    """The files embedded in the PDF, by name."""
    out: dict[str, bytes] = {}
    names = reader.root.get("/Names")
    if not isinstance(names, DictionaryObject) or "/EmbeddedFiles" not in names:
        return out
    arr = names["/EmbeddedFiles"].get("/Names", ArrayObject())
    for i in range(0, len(arr) - 1, 2):
        spec = arr[i + 1].get_object()
        out[str(arr[i])] = spec["/EF"]["/F"].get_object().data
    return out


def verify_pdf(data: bytes, trust: Trust, checks: Checks) -> dict[str, bytes]:
    """Check the PDF's PAdES signature; return its attachments."""
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = reader.embedded_signatures
    except Exception as exc:  # noqa: BLE001 - a damaged PDF can fail anywhere in the parser
        raise checks.fail(f"PDF illisible / unreadable PDF: {exc}") from exc
    if len(sigs) != 1:
        raise checks.fail(f"le PDF doit porter une signature, il en porte {len(sigs)} / "
                          f"the PDF must carry exactly one signature, it has {len(sigs)}")
    sig = sigs[0]
    context = ValidationContext(trust_roots=[_acert(a) for a in trust.anchors],
                                allow_fetching=False)
    try:
        status = validate_pdf_signature(sig, context)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds on damaged input
        raise checks.fail(f"signature PDF illisible / unreadable PDF signature: {exc}") from exc
    if not (status.intact and status.valid):
        raise checks.fail("signature PDF invalide : le PDF a été modifié / invalid PDF "
                          "signature: the PDF was altered after signing")
    if status.coverage is None or status.coverage.name != "ENTIRE_FILE" \
            or not _contents_canonical(data, list(sig.sig_object["/ByteRange"])):
        raise checks.fail("la signature PDF ne couvre pas tout le fichier / the PDF signature "
                          "does not cover the whole file (bytes added or changed)")
    certs = _cms_certs(sig.signed_data)
    if certs is None:
        raise checks.fail("un certificat joint à la signature PDF est illisible / a certificate "
                          "carried by the PDF signature cannot be read (altered?)")
    try:
        trust.validate(_signer_first(certs, status.signing_cert))
    except VerificationFailed as exc:
        raise checks.fail(f"certificat de signature PDF refusé / PDF signing certificate "
                          f"refused: {exc}") from exc
    if not status.trusted:
        raise checks.fail("le certificat de signature PDF n'est pas émis par le certificat de "
                          f"confiance / the PDF signing certificate is not issued by the trusted "
                          f"certificate ({trust.describe()})")
    if not _embedded_certs_genuine(certs, trust):
        raise checks.fail("un certificat joint à la signature PDF a été modifié / a certificate "
                          "carried by the PDF signature was altered")
    signer = status.signing_cert.subject.human_friendly
    checks.ok(f"signature PAdES valide, couvre tout le fichier / valid PAdES signature over "
              f"the whole file ({signer})")
    return attachments(reader)


