"""The station's TLS: its own CA and the server certificate it issues, or a
certificate the operator installed.

Files in <data dir>/keys (0700; every file written with write_atomic, 0600):
- `tls-ca.key` (ECDSA P-256) and `tls-ca.crt`: the station's TLS CA, made at
  first use. Agents pin `tls-ca.crt` (`imager keys tls-ca OUT` exports it; a
  boot medium carries it). It is not the document-signing key (`station.key`):
  a key that serves connections on the network can never sign a certificate of
  erasure, and the signing key never serves a connection.
- `tls.key` and `tls.crt` (the server certificate, then the CA's): issued by
  the TLS CA for the names and addresses the station listens on, and issued
  again at start when those change, when fewer than RENEW are left, or when
  the CA is another one.
- `tls-installed.crt` (the server certificate, then its issuers) and
  `tls-installed.key`: a certificate the operator installed (`imager keys
  tls-install CERT KEY`). While they are there they are served instead, never
  issued again, and agents pin the last certificate of the chain. Removing
  both goes back to the station's own CA.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from imager.certify.identity import StationProfile
from imager.certify.keys import fingerprint, issued_by, key_fingerprint, load_cert, pem
from imager.errors import UsageError
from imager.host.files import private_dir, write_atomic
from imager.host.net import WILDCARDS, addresses, hostname, is_loopback

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)
RENEW = timedelta(days=180)
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


# -- names ---------------------------------------------------------------------

def normal_name(name: str) -> str | None:
    """`name` as a certificate names it (an address in its short form, a DNS name
    in lower case), or None if it is neither."""
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    dns = name.lower().rstrip(".")
    if len(dns) <= 253 and all(_LABEL.fullmatch(label) for label in dns.split(".")):
        return dns
    return None


def listen_names(host: str, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The names and addresses a station listening on `host` answers to: that
    address or name (every address of this machine for a wildcard), the loopback
    names when the local agent reaches it that way, the hostname, then `extra`
    (UsageError naming one that is neither an address nor a DNS name)."""
    names: list[str] = []
    if host in WILDCARDS:
        names += ["localhost", *addresses()]
    else:
        names.append(host)
    if is_loopback(host):
        names += ["localhost", "127.0.0.1", "::1"]
    found = [n for n in (normal_name(n) for n in (*names, hostname())) if n]
    for name in extra:
        normal = normal_name(name)
        if normal is None:
            raise UsageError(f"--tls-name {name!r} n'est ni une adresse IP ni un nom DNS / is "
                             "neither an IP address nor a DNS name (letters, digits, hyphens "
                             "and dots, e.g. station.atelier.lan or 192.168.1.10)")
        found.append(normal)
    return tuple(dict.fromkeys(found))


def cert_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names and IP addresses of a certificate's subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return (*san.get_values_for_type(x509.DNSName),
            *(str(a) for a in san.get_values_for_type(x509.IPAddress)))


def _general_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


# -- keys and certificates -----------------------------------------------------

def _subject(common: str, profile: StationProfile) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common[:64])]
    if profile.organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.organisation[:64]))
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COUNTRY_NAME, profile.country)])


def _load_key(path: Path) -> PrivateKeyTypes:
    """A key of the keys dir: never readable by others."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise UsageError(f"la clé TLS {path} est lisible par d'autres (mode {mode:o}) / the TLS "
                         f"key {path} is readable by others (mode {mode:o}): run "
                         f"`chmod 600 {path}`")
    return _read_key(path)


def _read_key(path: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise UsageError(f"impossible de lire / cannot read the key file {path}: "
                         f"{exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path} n'est pas une clé privée PEM sans mot de passe / is not an "
                         f"unencrypted PEM private key ({exc}): give the key file that goes "
                         "with the certificate") from exc


def _ec_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key at `path`, made (0600) if there is none."""
    if not path.exists():
        made = ec.generate_private_key(ec.SECP256R1())
        write_atomic(path, made.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    key = _load_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"{path} n'est pas une clé à courbe elliptique / is not an "
                         "elliptic-curve key: move it away, a new one is made at the next "
                         "start")
    return key


def _usage(*, certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not certs, content_commitment=False,
                         key_encipherment=False, data_encipherment=False,
                         key_agreement=False, key_cert_sign=certs, crl_sign=certs,
                         encipher_only=False, decipher_only=False)


def _builder(subject: x509.Name, issuer: x509.Name, key: CertificatePublicKeyTypes,
             start: datetime, end: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False))


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class TlsCa:
    """The station's TLS CA: it issues the server certificate, nothing else."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path

    @classmethod
    def open(cls, keys_dir: Path, profile: StationProfile) -> TlsCa:
        """The TLS CA of this station, made at first use."""
        private_dir(keys_dir)
        os.chmod(keys_dir, 0o700)     # an existing one too: it holds the private keys
        key, path = _ec_key(keys_dir / "tls-ca.key"), keys_dir / "tls-ca.crt"
        if not path.exists():
            name = _subject(f"imager station {profile.station} TLS CA", profile)
            now = _now()
            cert = (_builder(name, name, key.public_key(), now - timedelta(minutes=5),
                             now + CA_VALIDITY)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .add_extension(_usage(certs=True), critical=True)
                    .sign(key, hashes.SHA256()))
            write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))
        cert = load_cert(path)[0]
        if fingerprint(cert) != key_fingerprint(key.public_key()):
            raise UsageError(f"{path} ne certifie pas / does not certify {keys_dir}/tls-ca.key: "
                             "move both away, a new TLS CA is made at the next start (then "
                             "give agents the new one: `imager keys tls-ca`)")
        if _now() > cert.not_valid_after_utc:
            raise UsageError(
                f"la CA TLS de la station a expiré le / the station's TLS CA expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d} ({path}): move tls-ca.key and tls-ca.crt "
                "away, a new one is made at the next start; then give agents the new CA "
                "(`imager keys tls-ca station-ca.pem`)")
        return cls(key, cert, path)

    def issue(self, key: ec.EllipticCurvePrivateKey, names: Sequence[str], *,
              start: datetime | None = None, end: datetime | None = None) -> x509.Certificate:
        """A server certificate for `key` naming `names`, from `start` (five minutes
        ago) to `end` (SERVER_VALIDITY later, never past the CA's own end)."""
        start = start or _now() - timedelta(minutes=5)
        end = end or min(start + SERVER_VALIDITY, self.cert.not_valid_after_utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
        return (_builder(subject, self.cert.subject, key.public_key(), start, end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_usage(certs=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(_general_names(names)),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))


@dataclass(frozen=True)
class ServerTls:
    """What the station serves and what its agents pin."""

    certfile: Path          # the server certificate, then its issuers
    keyfile: Path
    cafile: Path            # what an agent pins (the local agent reads it here)
    cert: x509.Certificate
    pinned: x509.Certificate
    installed: bool         # the operator's certificate
    issued: bool            # issued at this start (first start, names changed, renewal)

    @property
    def names(self) -> tuple[str, ...]:
        return cert_names(self.cert)

    def name_for(self, host: str) -> str | None:
        """The name to check the certificate against when connecting to `host`:
        None when it names `host`, else its first name (an installed certificate
        reached on loopback by the local agent)."""
        normal = normal_name(host)
        return None if normal in self.names or not self.names else self.names[0]


def _installed_paths(keys_dir: Path) -> tuple[Path, Path]:
    return keys_dir / "tls-installed.crt", keys_dir / "tls-installed.key"


def server_tls(keys_dir: Path, profile: StationProfile, names: Sequence[str]) -> ServerTls:
    """The certificate to serve for `names`: the installed one if there is one,
    else the station's own, issued again when needed."""
    cert_path, key_path = _installed_paths(keys_dir)
    if cert_path.exists() or key_path.exists():
        return _installed(cert_path, key_path)
    ca = TlsCa.open(keys_dir, profile)
    key = _ec_key(keys_dir / "tls.key")
    path = keys_dir / "tls.crt"
    current = load_cert(path)[0] if path.exists() else None
    if current is not None and _current(current, key, ca, names):
        return ServerTls(path, keys_dir / "tls.key", ca.path, current, ca.cert, False, False)
    cert = ca.issue(key, names)
    write_atomic(path, (pem(cert) + pem(ca.cert)).encode("ascii"))
    return ServerTls(path, keys_dir / "tls.key", ca.path, cert, ca.cert, False, True)


def _current(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca: TlsCa,
             names: Sequence[str]) -> bool:
    """Whether `cert` may be served again: issued by `ca` for `key`, naming exactly
    `names`, within its dates with more than RENEW left (or ending with the CA)."""
    now, end = _now(), cert.not_valid_after_utc
    return issued_by(cert, ca.cert) \
        and fingerprint(cert) == key_fingerprint(key.public_key()) \
        and set(cert_names(cert)) == set(names) \
        and cert.not_valid_before_utc <= now < end \
        and (end - now > RENEW or end >= ca.cert.not_valid_after_utc)


def _installed(cert_path: Path, key_path: Path) -> ServerTls:
    if not (cert_path.exists() and key_path.exists()):
        missing = key_path if cert_path.exists() else cert_path
        raise UsageError(f"{missing} manque / is missing: install the certificate and its key "
                         "again (`imager keys tls-install CERT KEY`), or remove "
                         f"{cert_path.name} and {key_path.name} to use the station's own CA")
    certs = load_cert(cert_path)
    _check_dates(certs[0], cert_path)
    return ServerTls(cert_path, key_path, cert_path, certs[0], certs[-1], True, False)


def _check_dates(cert: x509.Certificate, path: Path) -> None:
    now = _now()
    if now > cert.not_valid_after_utc or now < cert.not_valid_before_utc:
        raise UsageError(
            f"le certificat TLS {path} n'est pas dans ses dates / the TLS certificate {path} is "
            f"out of its dates ({cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; now {now:%Y-%m-%d}): agents would refuse "
            "it. Install a renewed one (`imager keys tls-install CERT KEY`), or remove "
            "tls-installed.crt and tls-installed.key to use the station's own CA; if the "
            "dates look right, check this machine's clock")


def install(keys_dir: Path, cert_file: Path, key_file: Path) -> ServerTls:
    """Install the operator's server certificate (followed by its issuers, up to
    the CA agents will pin) and its key, after checking that they go together."""
    certs = load_cert(cert_file)
    leaf = certs[0]
    if len(certs) < 2:
        raise UsageError(f"{cert_file} ne contient qu'un certificat / holds one certificate "
                         "only: append its issuers' (up to the CA the agents will pin) after "
                         "it, in one PEM file")
    for cert, issuer in zip(certs, certs[1:], strict=False):
        if not issued_by(cert, issuer):
            raise UsageError(f"{cert_file}: {cert.subject.rfc4514_string()} n'est pas émis par "
                             f"le certificat suivant / is not issued by the next certificate "
                             f"({issuer.subject.rfc4514_string()}): order them server "
                             "certificate first, then each issuer")
    if not _is_ca(certs[-1]):
        raise UsageError(f"{cert_file}: le dernier certificat n'est pas une CA / the last "
                         "certificate is not a CA (basicConstraints CA:TRUE): end the file with "
                         "the CA the agents will pin")
    if _is_ca(leaf) or not cert_names(leaf):
        raise UsageError(f"{cert_file}: le premier certificat doit être celui du serveur, avec "
                         "ses noms / the first certificate must be the server's, not a CA, "
                         "with the names agents connect to in its subjectAltName")
    _check_dates(leaf, cert_file)
    key = _read_key(key_file)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise UsageError(f"{key_file}: une clé TLS est ECDSA, RSA ou Ed25519 / a TLS key is "
                         "ECDSA, RSA or Ed25519")
    if key_fingerprint(key.public_key()) != fingerprint(leaf):
        raise UsageError(f"{key_file} n'est pas la clé de / is not the key of the certificate "
                         f"in {cert_file}: give the key the certificate was issued for")
    cert_path, key_path = _installed_paths(private_dir(keys_dir))
    write_atomic(key_path, key_file.read_bytes())
    write_atomic(cert_path, "".join(pem(c) for c in certs).encode("ascii"))
    return _installed(cert_path, key_path)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def pinned(keys_dir: Path, profile: StationProfile) -> x509.Certificate:
    """The certificate agents pin: the top of the installed chain, or the
    station's TLS CA (made at first use)."""
    cert_path, key_path = _installed_paths(keys_dir)
    if cert_path.exists() or key_path.exists():
        return _installed(cert_path, key_path).pinned
    return TlsCa.open(keys_dir, profile).cert

