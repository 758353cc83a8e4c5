"""Certificates for the chain tests, made with `cryptography` the way a CA makes them,
and station keys whose certificates are replaced by them."""

from __future__ import annotations

import dataclasses
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from imager.certify.keys import StationKeys
from imager.station.tls import TlsCa

SAMPLE = Path(__file__).parent / "data" / "certificates" / "sample-erasure.json"
Key = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def usage(*, sign: bool = True, certs: bool = False) -> x509.KeyUsage:
    """keyUsage with digitalSignature + nonRepudiation (`sign`), keyCertSign + cRLSign
    (`certs`)."""
    return x509.KeyUsage(digital_signature=sign, content_commitment=sign,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=certs, crl_sign=certs, encipher_only=False,
                         decipher_only=False)


CA_USAGE = usage(sign=True, certs=True)


@dataclass(frozen=True)
class Made:
    key: Key
    cert: x509.Certificate


def make(name: str, *, key: Key | None = None, issuer: Made | None = None,
         ca: bool | None = True, pathlen: int | None = None,
         key_usage: x509.KeyUsage | None = CA_USAGE, days: tuple[int, int] = (-1, 365),
         critical: Sequence[x509.ExtensionType] = ()) -> Made:
    """A certificate for `key` (a new P-256 key if None) named CN=`name`, issued by
    `issuer` (self-signed if None), valid from now+days[0] to now+days[1];
    `ca=None` leaves basicConstraints out, `key_usage=None` keyUsage."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + timedelta(days=days[0]))
               .not_valid_after(now + timedelta(days=days[1])))
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), critical=True)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    for extension in critical:
        builder = builder.add_extension(extension, critical=True)
    signing_key = issuer.key if issuer else key
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Made(key, builder.sign(signing_key, algorithm))


def station_under(keys: StationKeys, station: Made, *chain: x509.Certificate) -> StationKeys:
    """`keys` with `station` (made for keys.signing_key) as the station certificate, its
    `chain`, and the PDF key re-certified by it."""
    pdf = make(f"{station.cert.subject.rfc4514_string()} (PDF)", key=keys.pdf_key,
               issuer=station, ca=False, key_usage=usage())
    return dataclasses.replace(keys, station_cert=station.cert, chain=tuple(chain),
                               pdf_cert=pdf.cert)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def sample() -> dict[str, Any]:
    record: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return record


def tls_server_context(issuer: TlsCa, folder: Path, *, days: tuple[int, int],
                       names: Sequence[str] = ("127.0.0.1",)) -> ssl.SSLContext:
    """The TLS context of a server on 127.0.0.1 (or `names`) whose certificate `issuer`
    made for that address, valid from now + days[0] to now + days[1] (files kept in
    `folder`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = issuer.issue(key, list(names), start=now + timedelta(days=days[0]),
                        end=now + timedelta(days=days[1]))
    folder.mkdir(parents=True, exist_ok=True)
    chain, key_file = folder / "server.pem", folder / "server.key"
    chain.write_bytes(pem(cert, issuer.cert))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key_file)
    return context
