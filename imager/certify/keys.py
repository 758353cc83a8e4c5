"""The station's keys and X.509 certificates, created at first use.

- `station.key` (Ed25519) signs every record (canonical JSON) and the ledger.
  Its certificate `station.crt` is self-signed by default, a small CA
  (pathlen 0) so it can certify the PDF key below. A network CA can issue it
  instead: `imager keys csr`, then `imager keys install CERT`.
- `pdf.key` (ECDSA P-256) signs PDFs (PAdES). Common PDF readers (poppler,
  NSS) cannot check Ed25519 yet, so PDFs use P-256; its certificate is issued
  by the station certificate, so a donor still trusts one certificate only.
  `pdf.crt` lasts no longer than the station certificate; it is issued again
  when the keys are loaded if it is out of its dates or was issued under
  another station certificate (a renewal for the same key and name).

Keys live in <data dir>/keys (mode 0700), each key file mode 0600. They are
never sent to agents.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import NameOID

from imager.certify.canonical import sha256_hex
from imager.certify.identity import StationProfile, load_profile
from imager.errors import UsageError
from imager.host.files import private_dir, write_atomic
from imager.settings import Settings

VALIDITY = timedelta(days=3650)


def fingerprint(cert: x509.Certificate) -> str:
    """sha256 of the certificate's SubjectPublicKeyInfo: names the key."""
    return key_fingerprint(cert.public_key())


def key_fingerprint(public_key: CertificatePublicKeyTypes) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + sha256_hex(spki)


def load_cert(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM (or DER) file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the certificate file {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise UsageError(f"{path} is not an X.509 certificate (PEM or DER): {exc}") from exc


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _name(common: str, profile: StationProfile) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common[:64])]
    if profile.organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.organisation[:64]))
    attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country))
    return x509.Name(attrs)


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _private_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_private(path: Path) -> PrivateKeyTypes:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UsageError(f"the signing key {path} is readable by others (mode {mode:o}): "
                         f"run `chmod 600 {path}`")
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


@dataclass(frozen=True)
class StationKeys:
    """The loaded keys and certificates of this station."""

    signing_key: ed25519.Ed25519PrivateKey
    station_cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]        # issuers of station_cert (network CA), if any
    pdf_key: ec.EllipticCurvePrivateKey
    pdf_cert: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.station_cert)

    def sign(self, data: bytes) -> str:
        """Base64 Ed25519 signature of `data`."""
        return base64.b64encode(self.signing_key.sign(data)).decode("ascii")

    def station_pem(self) -> str:
        """The station certificate, then its chain: what a donor needs to verify."""
        return "".join(pem(c) for c in (self.station_cert, *self.chain))

    @classmethod
    def open(cls, keys_dir: Path, profile: StationProfile) -> StationKeys:
        """Load the station keys, creating them (and their certificates) at first use."""
        private_dir(keys_dir)
        os.chmod(keys_dir, 0o700)     # an existing one too: it holds the private keys
        skey_path, scert_path = keys_dir / "station.key", keys_dir / "station.crt"
        if not skey_path.exists():
            _write_secret(skey_path, _private_pem(ed25519.Ed25519PrivateKey.generate()))
        signing_key = _load_private(skey_path)
        if not isinstance(signing_key, ed25519.Ed25519PrivateKey):
            raise UsageError(f"{skey_path} is not an Ed25519 key: move it away to create a new one")
        if not scert_path.exists():
            write_atomic(scert_path, _self_signed(signing_key, profile).public_bytes(
                serialization.Encoding.PEM))
        certs = load_cert(scert_path)
        station_cert, chain = certs[0], tuple(certs[1:])
        if fingerprint(station_cert) != key_fingerprint(signing_key.public_key()):
            raise UsageError(f"{scert_path} does not certify {skey_path}: install the "
                             "certificate issued for this key (`imager keys install`)")
        pkey_path, pcert_path = keys_dir / "pdf.key", keys_dir / "pdf.crt"
        if not pkey_path.exists():
            _write_secret(pkey_path, _private_pem(ec.generate_private_key(ec.SECP256R1())))
        pdf_key = _load_private(pkey_path)
        if not isinstance(pdf_key, ec.EllipticCurvePrivateKey):
            raise UsageError(f"{pkey_path} is not an elliptic-curve key: move it away to "
                             "create a new one")
        pdf_cert = load_cert(pcert_path)[0] if pcert_path.exists() else None
        if pdf_cert is None or not _pdf_cert_current(pdf_cert, station_cert, pdf_key):
            pdf_cert = _pdf_cert(pdf_key, signing_key, station_cert, profile)
            write_atomic(pcert_path, pdf_cert.public_bytes(serialization.Encoding.PEM))
        return cls(signing_key, station_cert, chain, pdf_key, pdf_cert)


def within_dates(cert: x509.Certificate, at: datetime) -> bool:
    """Whether `at` (aware) falls within the certificate's validity dates."""
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _pdf_cert_current(pdf_cert: x509.Certificate, station_cert: x509.Certificate,
                     pdf_key: ec.EllipticCurvePrivateKey) -> bool:
    """Whether `pdf_cert` may go on certifying `pdf_key` under `station_cert`: issued by
    it for that key and, while the station certificate is within its dates, valid now
    and within the station certificate's dates. A PDF certificate that began before the
    station certificate was issued under an earlier one (a renewal for the same key and
    name keeps issued_by true): it is issued again, so that it does not expire first."""
    if not issued_by(pdf_cert, station_cert) \
            or fingerprint(pdf_cert) != key_fingerprint(pdf_key.public_key()):
        return False
    now = datetime.now(UTC)
    if not within_dates(station_cert, now):   # nothing to issue under: check_signing_keys says
        return True
    return within_dates(pdf_cert, now) \
        and station_cert.not_valid_before_utc <= pdf_cert.not_valid_before_utc \
        and pdf_cert.not_valid_after_utc <= station_cert.not_valid_after_utc


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _builder(subject: x509.Name, issuer: x509.Name, public_key: CertificatePublicKeyTypes,
             *, within: x509.Certificate | None = None) -> x509.CertificateBuilder:
    """A certificate from five minutes ago for VALIDITY, within the dates of `within`
    (its issuer's certificate) if given: those very dates when `within` has expired
    (nothing can be signed under it then; `signing.check_signing_keys` says so)."""
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(minutes=5), now + VALIDITY
    if within is not None:
        start = max(start, within.not_valid_before_utc)
        end = min(end, within.not_valid_after_utc)
        if end <= start:
            start, end = within.not_valid_before_utc, within.not_valid_after_utc
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False))


def _self_signed(key: ed25519.Ed25519PrivateKey, profile: StationProfile) -> x509.Certificate:
    name = _name(f"imager station {profile.station}", profile)
    return (_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, None))


def _pdf_cert(key: ec.EllipticCurvePrivateKey, issuer_key: ed25519.Ed25519PrivateKey,
              issuer: x509.Certificate, profile: StationProfile) -> x509.Certificate:
    subject = _name(f"imager station {profile.station} (PDF)", profile)
    return (_builder(subject, issuer.subject, key.public_key(), within=issuer)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), False)
            .sign(issuer_key, None))


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def station_keys(settings: Settings, profile: StationProfile | None = None) -> StationKeys:
    """This station's keys (created at first use), for its settings and profile."""
    return StationKeys.open(keys_dir(settings), profile or load_profile(settings))


def csr(keys_dir: Path, profile: StationProfile) -> bytes:
    """A certificate signing request for the station key, for a network CA."""
    key = StationKeys.open(keys_dir, profile).signing_key
    req = (x509.CertificateSigningRequestBuilder()
           .subject_name(_name(f"imager station {profile.station}", profile))
           .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
           .sign(key, None))
    return req.public_bytes(serialization.Encoding.PEM)


def install(keys_dir: Path, profile: StationProfile, cert_file: Path) -> StationKeys:
    """Install a station certificate issued by a network CA (with its chain)."""
    keys = StationKeys.open(keys_dir, profile)
    certs = load_cert(cert_file)
    if fingerprint(certs[0]) != keys.fingerprint:
        raise UsageError(f"{cert_file} certifies the key {fingerprint(certs[0])}, not this "
                         f"station's key {keys.fingerprint}: ask the CA to sign the request "
                         "from `imager keys csr`")
    bc = certs[0].extensions.get_extension_for_class(x509.BasicConstraints).value \
        if _has(certs[0], x509.BasicConstraints) else None
    if bc is None or not bc.ca:
        raise UsageError(f"{cert_file} is not a CA certificate (basicConstraints CA:TRUE, "
                         "pathlen:0): the station certifies its own PDF key with it")
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    write_atomic(keys_dir / "station.crt", data)
    (keys_dir / "pdf.crt").unlink(missing_ok=True)  # re-issued under the new certificate
    return StationKeys.open(keys_dir, profile)


def _has(cert: x509.Certificate, ext: type) -> bool:
    try:
        cert.extensions.get_extension_for_class(ext)
    except x509.ExtensionNotFound:
        return False
    return True
