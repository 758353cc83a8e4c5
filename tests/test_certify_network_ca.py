"""A station whose certificate a network CA issued: donors trust the CA only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from weasyprint import HTML

from imager.certify.identity import load_profile
from imager.certify.keys import StationKeys, csr, install
from imager.certify.pades import sign_pdf, verify_pdf
from imager.certify.signing import Checks, Trust, VerificationFailed, sign_document
from imager.certify.verify import check_json
from imager.errors import UsageError
from imager.settings import Settings

SAMPLE = Path(__file__).parent / "data" / "certificates" / "sample-erasure.json"


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AC du réseau solidaire")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=900))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, request: bytes,
           *, is_ca: bool = True) -> bytes:
    req = x509.load_pem_x509_csr(request)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(req.subject).issuer_name(ca.subject)
            .public_key(req.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                           critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, True, True, False,
                                         False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(
        serialization.Encoding.PEM)


def test_documents_of_a_ca_certified_station_verify_against_the_ca(settings: Settings,
                                                                   tmp_path: Path) -> None:
    profile = load_profile(settings)
    kdir = settings.data_dir / "keys"
    ca_key, ca = _ca()
    issued = tmp_path / "station.crt"
    issued.write_bytes(_issue(ca_key, ca, csr(kdir, profile)))
    keys = install(kdir, profile, issued)
    assert keys.station_cert.issuer == ca.subject and keys.chain == (ca,)
    again = StationKeys.open(kdir, profile)            # the PDF key was re-certified
    again.pdf_cert.verify_directly_issued_by(again.station_cert)

    record = json.loads(SAMPLE.read_text(encoding="utf-8"))
    signed = sign_document(record, again)
    trust_ca = Trust([ca])
    assert check_json(signed, trust_ca, Checks()) == record
    pdf = sign_pdf(HTML(string="<p>Zoé</p>").write_pdf(), again, reason="test", location="Gap")
    checks = Checks()
    verify_pdf(pdf, trust_ca, checks)
    assert checks.lines[-1][0]

    other_key, other_ca = _ca()                         # another CA is not trusted
    with pytest.raises(VerificationFailed):
        check_json(signed, Trust([other_ca]), Checks())
    with pytest.raises(VerificationFailed):
        verify_pdf(pdf, Trust([other_ca]), Checks())
    del other_key


def test_install_refuses_a_certificate_for_another_key_or_not_a_ca(settings: Settings,
                                                                   tmp_path: Path) -> None:
    profile = load_profile(settings)
    ca_key, ca = _ca()
    other = StationKeys.open(tmp_path / "other", profile)
    wrong = tmp_path / "wrong.crt"
    wrong.write_bytes(_issue(ca_key, ca, csr(tmp_path / "other", profile)))
    with pytest.raises(UsageError, match="not this station's key"):
        install(settings.data_dir / "keys", profile, wrong)
    leaf = tmp_path / "leaf.crt"
    leaf.write_bytes(_issue(ca_key, ca, csr(settings.data_dir / "keys", profile), is_ca=False))
    with pytest.raises(UsageError, match="not a CA certificate"):
        install(settings.data_dir / "keys", profile, leaf)
    del other
