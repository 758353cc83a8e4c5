"""The station's TLS certificates, made with its own key code: a TLS CA of its
own, separate from the document-signing key; a server certificate naming what
the station listens on, issued again when that changes; an operator's
certificate installed instead."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from imager.certify.chain import ChainError, validate_chain
from imager.certify.identity import load_profile
from imager.certify.keys import fingerprint, keys_dir, pem, station_keys
from imager.errors import UsageError
from imager.host.net import addresses, hostname
from imager.settings import Settings
from imager.station.tls import TlsCa, install, listen_names, pinned, server_tls


def _keys(tmp_path: Path) -> tuple[Path, Settings]:
    settings = Settings(data_dir=tmp_path / "station")
    return keys_dir(settings), settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tls_ca_is_made_once_owner_only_and_cannot_sign_documents(tmp_path: Path) -> None:
    kd, settings = _keys(tmp_path)
    profile = load_profile(settings)
    ca = TlsCa.open(kd, profile)
    assert _mode(kd) == 0o700 and _mode(kd / "tls-ca.key") == 0o600
    assert fingerprint(TlsCa.open(kd, profile).cert) == fingerprint(ca.cert)   # kept
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and not usage.digital_signature and not usage.content_commitment

    tls = server_tls(kd, profile, listen_names("127.0.0.1"))
    signing = station_keys(settings)
    assert fingerprint(ca.cert) not in (signing.fingerprint, fingerprint(signing.pdf_cert))
    assert fingerprint(tls.cert) not in (signing.fingerprint, fingerprint(signing.pdf_cert))
    eku = tls.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # a document signed with the TLS key does not verify against the station's certificate
    with pytest.raises(ChainError):
        validate_chain([tls.cert, ca.cert], [signing.station_cert], datetime.now(UTC))


def test_server_certificate_names_the_listen_address_and_is_issued_again_when_it_changes(
        tmp_path: Path) -> None:
    kd, settings = _keys(tmp_path)
    profile = load_profile(settings)
    first = server_tls(kd, profile, listen_names("127.0.0.2", ["station.atelier.test"]))
    assert first.issued and not first.installed
    assert set(first.names) == {"127.0.0.2", "127.0.0.1", "::1", "localhost", hostname(),
                                "station.atelier.test"}
    assert _mode(first.keyfile) == 0o600
    assert first.cert.issuer == first.pinned.subject and first.cafile == kd / "tls-ca.crt"
    served = x509.load_pem_x509_certificates(first.certfile.read_bytes())
    assert [fingerprint(c) for c in served] == [fingerprint(first.cert), fingerprint(first.pinned)]

    same = server_tls(kd, profile, listen_names("127.0.0.2", ["station.atelier.test"]))
    assert not same.issued and same.cert == first.cert

    moved = server_tls(kd, profile, listen_names("0.0.0.0"))
    assert moved.issued and "station.atelier.test" not in moved.names
    assert set(addresses()) <= set(moved.names) and "localhost" in moved.names
    assert fingerprint(moved.cert) == fingerprint(first.cert)         # same key, new names
    assert fingerprint(moved.pinned) == fingerprint(first.pinned)     # agents keep their CA


def test_server_certificate_near_its_end_is_renewed(tmp_path: Path) -> None:
    kd, settings = _keys(tmp_path)
    profile = load_profile(settings)
    names = listen_names("127.0.0.1")
    first = server_tls(kd, profile, names)
    ca = TlsCa.open(kd, profile)
    now = datetime.now(UTC)
    key = serialization.load_pem_private_key(first.keyfile.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    ending = ca.issue(key, names, start=now - timedelta(days=700), end=now + timedelta(days=30))
    first.certfile.write_bytes((pem(ending) + pem(ca.cert)).encode())
    renewed = server_tls(kd, profile, names)
    assert renewed.issued and renewed.cert.not_valid_after_utc > now + timedelta(days=700)


def test_listen_names_refuse_a_name_that_is_not_one(tmp_path: Path) -> None:
    assert listen_names("::1")[:1] == ("::1",)
    assert listen_names("[::1]")[:1] == ("::1",)
    with pytest.raises(UsageError, match="neither an IP address nor a DNS name"):
        listen_names("0.0.0.0", ["bad name!"])


def _network_ca(tmp_path: Path) -> TlsCa:
    """Another CA, made with the same code: stands for a network's own CA."""
    other = Settings(data_dir=tmp_path / "network-ca")
    return TlsCa.open(keys_dir(other), load_profile(other))


def _issued(tmp_path: Path, ca: TlsCa, names: list[str], *, days: tuple[int, int] = (-1, 90),
            ) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = ca.issue(key, names, start=now + timedelta(days=days[0]),
                    end=now + timedelta(days=days[1]))
    cert_file, key_file = tmp_path / "server.pem", tmp_path / "server.key"
    cert_file.write_text(pem(cert) + pem(ca.cert))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_installed_certificate_is_served_and_its_ca_pinned(tmp_path: Path) -> None:
    kd, settings = _keys(tmp_path)
    profile = load_profile(settings)
    network = _network_ca(tmp_path)
    cert_file, key_file = _issued(tmp_path, network, ["station.atelier.test"])
    done = install(kd, cert_file, key_file)
    assert done.installed and done.names == ("station.atelier.test",)
    assert _mode(kd / "tls-installed.key") == 0o600
    served = server_tls(kd, profile, listen_names("0.0.0.0"))
    assert served.installed and not served.issued and served.cert == done.cert
    assert fingerprint(pinned(kd, profile)) == fingerprint(network.cert)
    # the local agent reaches it on loopback and checks the name it carries
    assert served.name_for("127.0.0.1") == "station.atelier.test"
    assert served.name_for("station.atelier.test") is None
    assert not (kd / "tls.crt").exists()


def test_install_refuses_what_agents_would_refuse(tmp_path: Path) -> None:
    kd, _ = _keys(tmp_path)
    network = _network_ca(tmp_path)
    cert_file, key_file = _issued(tmp_path, network, ["station.atelier.test"])
    other_key = tmp_path / "other.key"
    other_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(UsageError, match="is not the key of the certificate"):
        install(kd, cert_file, other_key)
    alone = tmp_path / "alone.pem"
    alone.write_text(cert_file.read_text().split("-----END CERTIFICATE-----")[0]
                     + "-----END CERTIFICATE-----\n")
    with pytest.raises(UsageError, match="holds one certificate only"):
        install(kd, alone, key_file)
    expired_cert, expired_key = _issued(tmp_path, network, ["station.atelier.test"],
                                        days=(-400, -1))
    with pytest.raises(UsageError, match="out of its dates"):
        install(kd, expired_cert, expired_key)
    assert not (kd / "tls-installed.crt").exists()
