"""The signer's certificate chain: every signed file (JSON record, donation CSV, ledger
head and export, PDF) is refused when a certificate up to the trusted one is expired,
not yet valid, issued by a non-CA, beyond a path length, or not meant for its use."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from certmaker import Made, make, pem, sample, station_under, usage
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from imager.certify.canonical import sha256_hex
from imager.certify.chain import ChainError, validate_chain
from imager.certify.donation import donation_record, drive_line
from imager.certify.keys import StationKeys, station_keys
from imager.certify.ledger import Ledger, read_head, verify_export
from imager.certify.pades import sign_pdf, verify_pdf
from imager.certify.record import Parties
from imager.certify.render import donation_csv, render_drive_pdf
from imager.certify.signing import (
    Checks,
    Trust,
    VerificationFailed,
    check_signing_keys,
    sign_document,
)
from imager.certify.verify import check_json, trust_from, verify_file
from imager.errors import UsageError
from imager.settings import Settings
from imager.store.db import Registry

NAME = "imager station atelier-gap"


@pytest.fixture
def keys(settings: Settings) -> StationKeys:
    return station_keys(settings)


@pytest.fixture(scope="module")
def network_ca() -> Made:
    return make("AC du réseau solidaire", pathlen=1)


def _refused(keys: StationKeys, trust: Trust) -> str:
    """The message check_json gives for a record signed with `keys`."""
    with pytest.raises(VerificationFailed) as caught:
        check_json(sign_document(sample(), keys), trust, Checks())
    return str(caught.value)


def test_an_expired_signer_issued_by_a_non_ca_leaf_is_refused(keys: StationKeys,
                                                               network_ca: Made) -> None:
    leaf = make("poste de Zoé", issuer=network_ca, ca=False, key_usage=usage())
    signer = make(NAME, key=keys.signing_key, issuer=leaf, pathlen=0, days=(-30, -1))
    message = _refused(station_under(keys, signer, leaf.cert, network_ca.cert),
                       Trust([network_ca.cert]))
    assert f"the certificate CN={NAME} expired on" in message
    assert "« CN=poste de Zoé » (émetteur de / issuer of CN=imager station atelier-gap) n'est " \
           "pas une autorité de certification" in message
    assert "is not a certification authority (no basicConstraints CA:TRUE)" in message
    assert "imager keys csr" in message          # and what to do


BAD_CHAINS: dict[str, tuple[Callable[[StationKeys, Made], tuple[StationKeys, Made]], str]] = {
    "expired signer": (
        lambda k, ca: (station_under(k, make(NAME, key=k.signing_key, issuer=ca, pathlen=0,
                                             days=(-30, -1)), ca.cert), ca),
        f"the certificate CN={NAME} expired on"),
    "signer not yet valid": (
        lambda k, ca: (station_under(k, make(NAME, key=k.signing_key, issuer=ca, pathlen=0,
                                             days=(2, 30)), ca.cert), ca),
        f"the certificate CN={NAME} is not valid before"),
    "signer issued by a non-CA": (
        lambda k, ca: _under_leaf(k, ca, ca=False),
        "is not a certification authority"),
    "signer issued by a certificate without basicConstraints": (
        lambda k, ca: _under_leaf(k, ca, ca=None),
        "is not a certification authority"),
    "issuer without keyCertSign": (
        lambda k, ca: _under_leaf(k, ca, ca=True, key_usage=usage()),
        "may not sign certificates (its keyUsage lacks keyCertSign)"),
    "issuer without keyUsage": (
        lambda k, ca: _under_leaf(k, ca, ca=True, key_usage=None),
        "may not sign certificates (its keyUsage lacks keyCertSign)"),
    "path longer than the root allows": (
        lambda k, _: _under_leaf(k, make("AC racine", pathlen=0), ca=True),
        "allows 0 intermediate CA(s) below it (pathLenConstraint), the chain has 1"),
    "signer without digitalSignature": (
        lambda k, ca: (station_under(k, make(NAME, key=k.signing_key, issuer=ca, pathlen=0,
                                             key_usage=usage(sign=False, certs=True)),
                                     ca.cert), ca),
        f"the certificate CN={NAME} may not sign documents (keyUsage sans / without "
        "digitalSignature"),
    "signer without keyUsage": (
        lambda k, ca: (station_under(k, make(NAME, key=k.signing_key, issuer=ca, pathlen=0,
                                             key_usage=None), ca.cert), ca),
        f"the certificate CN={NAME} may not sign documents (keyUsage absent)"),
    "expired root": (
        lambda k, _: _signed_by(k, make("AC expirée", pathlen=1, days=(-900, -2))),
        "the certificate CN=AC expirée expired on"),
    "root not a CA": (
        lambda k, _: _signed_by(k, make("racine non-AC", ca=False)),
        "« CN=racine non-AC » (émetteur de / issuer of CN=imager station atelier-gap) n'est "
        "pas une autorité de certification"),
    "unknown critical extension": (
        lambda k, ca: (station_under(k, make(NAME, key=k.signing_key, issuer=ca, pathlen=0,
                                             critical=[x509.UnrecognizedExtension(
                                                 ObjectIdentifier("1.3.6.1.4.1.99999.1"),
                                                 b"\x05\x00")]), ca.cert), ca),
        "carries a critical extension this verifier does not support (1.3.6.1.4.1.99999.1)"),
}


def _under_leaf(keys: StationKeys, root: Made, **leaf_options: object) -> tuple[StationKeys, Made]:
    """The station certificate issued by an intermediate made with `leaf_options`."""
    leaf = make("intermédiaire", issuer=root, **leaf_options)  # type: ignore[arg-type]
    station = make(NAME, key=keys.signing_key, issuer=leaf, pathlen=0)
    return station_under(keys, station, leaf.cert, root.cert), root


def _signed_by(keys: StationKeys, root: Made) -> tuple[StationKeys, Made]:
    return station_under(keys, make(NAME, key=keys.signing_key, issuer=root, pathlen=0),
                         root.cert), root


@pytest.mark.parametrize("case", BAD_CHAINS)
def test_every_certificate_of_the_chain_is_checked(case: str, keys: StationKeys,
                                                   network_ca: Made) -> None:
    build, expected = BAD_CHAINS[case]
    bad, root = build(keys, network_ca)
    assert expected in _refused(bad, Trust([root.cert]))


def test_a_chain_of_two_authorities_within_their_limits_verifies(keys: StationKeys) -> None:
    root = make("AC racine", pathlen=1)
    sub = make("AC des ateliers", issuer=root, pathlen=0)
    good = station_under(keys, make(NAME, key=keys.signing_key, issuer=sub, pathlen=0),
                         sub.cert, root.cert)
    checks = Checks()
    assert check_json(sign_document(sample(), good), Trust([root.cert]), checks) == sample()
    assert any("chain of 3 certificates" in text for _, text in checks.lines), checks.lines


def test_an_expired_station_certificate_trusted_directly_is_refused(keys: StationKeys) -> None:
    expired = make(NAME, key=keys.signing_key, pathlen=0, days=(-3650, -1))
    bad = station_under(keys, expired)
    assert f"the certificate CN={NAME} expired on" in _refused(bad, Trust([expired.cert]))


def test_a_renewed_certificate_for_the_same_key_verifies_older_documents(
        keys: StationKeys) -> None:
    expired = make(NAME, key=keys.signing_key, pathlen=0, days=(-3650, -1))
    old_document = sign_document(sample(), station_under(keys, expired))
    renewed = make(NAME, key=keys.signing_key, pathlen=0)
    assert check_json(old_document, Trust([renewed.cert]), Checks()) == sample()


@pytest.mark.parametrize("order", ["renewed first", "expired first"])
def test_a_trust_file_with_the_expired_and_the_renewed_certificate_verifies_in_any_order(
        order: str, keys: StationKeys, network_ca: Made, tmp_path: Path) -> None:
    """The same key in two trusted certificates (the old one expired, its renewal), for a
    station trusted directly and for its network CA: the one valid now counts."""
    expired = make(NAME, key=keys.signing_key, pathlen=0, days=(-3650, -1))
    renewed = make(NAME, key=keys.signing_key, pathlen=0)
    old_ca = make("AC du réseau solidaire", key=network_ca.key, pathlen=1, days=(-3650, -1))
    station = station_under(keys, make(NAME, key=keys.signing_key, issuer=network_ca,
                                       pathlen=0), network_ca.cert)
    for signer, pair in ((keys, (renewed.cert, expired.cert)),
                         (station, (network_ca.cert, old_ca.cert))):
        trust_file = tmp_path / "trust.pem"
        trust_file.write_bytes(pem(*(pair if order == "renewed first" else pair[::-1])))
        document = tmp_path / "document.json"
        document.write_bytes(sign_document(sample(), signer))
        verdict = verify_file(document, trust_from([trust_file]))
        assert verdict.ok, verdict.checks.lines


def test_validate_chain_names_every_problem_at_the_given_time(keys: StationKeys,
                                                             network_ca: Made) -> None:
    leaf = make("poste", issuer=network_ca, ca=False, key_usage=usage())
    signer = make(NAME, key=keys.signing_key, issuer=leaf, pathlen=0, days=(-30, -1))
    with pytest.raises(ChainError) as caught:
        validate_chain([signer.cert, leaf.cert], [network_ca.cert], signer.cert.not_valid_after_utc)
    assert "expired" not in str(caught.value)       # valid at that time, still not a CA
    assert "is not a certification authority" in str(caught.value)


# --------------------------------------------------------------------------
# The same checks on every kind of signed file


def _bad(keys: StationKeys, ca: Made) -> StationKeys:
    """An expired station certificate issued by a non-CA leaf of the network CA."""
    leaf = make("poste de Zoé", issuer=ca, ca=False, key_usage=usage())
    signer = make(NAME, key=keys.signing_key, issuer=leaf, pathlen=0, days=(-30, -1))
    return station_under(keys, signer, leaf.cert, ca.cert)


def _good(keys: StationKeys, ca: Made) -> StationKeys:
    return station_under(keys, make(NAME, key=keys.signing_key, issuer=ca, pathlen=0), ca.cert)


def _json(keys: StationKeys, trust: Trust, _: Path, __: Registry) -> None:
    check_json(sign_document(sample(), keys), trust, Checks())


def _csv(keys: StationKeys, trust: Trust, tmp: Path, _: Registry) -> None:
    erasure = sample()
    parties = Parties(erasure["issuer"], erasure["validated_by"], erasure["donor"],
                      erasure["donation"], None, None)
    record = donation_record(parties, [drive_line(erasure, "ab" * 32)],
                             ledger=erasure["ledger"])
    csv = donation_csv(record)
    record["csv_sha256"] = sha256_hex(csv)
    (tmp / "don.json").write_bytes(sign_document(record, keys))
    (tmp / "don.csv").write_bytes(csv)
    verdict = verify_file(tmp / "don.csv", trust)
    if not verdict.ok:
        raise VerificationFailed(verdict.checks.lines[-1][1])


def _head(keys: StationKeys, trust: Trust, _: Path, registry: Registry) -> None:
    read_head(sign_document(Ledger(registry).head_document(), keys), trust, Checks())


def _export(keys: StationKeys, trust: Trust, _: Path, registry: Registry) -> None:
    verify_export(sign_document(Ledger(registry).export_document(), keys), trust, Checks())


def _pdf(keys: StationKeys, trust: Trust, _: Path, __: Registry) -> None:
    signed = sign_document(sample(), keys)
    pdf = render_drive_pdf(sample(), sha256=sha256_hex(signed), verify_url="",
                           attachments=[("record.json", signed, "signed record")])
    verify_pdf(sign_pdf(pdf, keys, reason="test", location="Gap"), trust, Checks())


PATHS = {"json": _json, "csv": _csv, "ledger head": _head, "ledger export": _export,
         "pdf": _pdf}


@pytest.mark.parametrize("path", PATHS)
def test_every_signed_file_goes_through_the_chain_checks(path: str, keys: StationKeys,
                                                        network_ca: Made, tmp_path: Path,
                                                        registry: Registry) -> None:
    check = PATHS[path]
    trust = Trust([network_ca.cert])
    check(_good(keys, network_ca), trust, tmp_path, registry)     # the file itself is fine
    with pytest.raises(VerificationFailed) as caught:
        check(_bad(keys, network_ca), trust, tmp_path, registry)
    assert f"the certificate CN={NAME} expired on" in str(caught.value)
    assert "CN=poste de Zoé" in str(caught.value)


def test_the_station_refuses_to_sign_with_an_expired_certificate(keys: StationKeys,
                                                                  network_ca: Made) -> None:
    check_signing_keys(keys)
    check_signing_keys(_good(keys, network_ca))
    with pytest.raises(UsageError, match=f"this station's keys cannot sign: .*CN={NAME} expired"):
        check_signing_keys(station_under(keys, make(NAME, key=keys.signing_key, pathlen=0,
                                                     days=(-30, -1))))


def _pdf_under_old_station(keys: StationKeys, days: tuple[int, int]) -> Made:
    """A PDF certificate for keys' PDF key, issued by their station certificate."""
    return make(f"{NAME} (PDF)", key=keys.pdf_key, issuer=Made(keys.signing_key,
                                                               keys.station_cert),
                ca=False, key_usage=usage(), days=days)


@pytest.mark.parametrize("old_pdf", ["expired", "issued before the renewal"])
def test_a_renewed_station_certificate_gets_a_new_pdf_certificate(
        old_pdf: str, settings: Settings, keys: StationKeys, tmp_path: Path,
        registry: Registry) -> None:
    """A renewal for the same key and name (without a CA: station.crt moved away) keeps
    issued_by true for the PDF certificate of the old station certificate: it is issued
    again when the keys are loaded, within the new station certificate's dates, so every
    new PDF verifies with the new station certificate."""
    kdir = settings.data_dir / "keys"
    old = _pdf_under_old_station(keys, (-3650, -1) if old_pdf == "expired" else (-30, 300))
    (kdir / "pdf.crt").write_bytes(pem(old.cert))
    (kdir / "station.crt").unlink()
    renewed = station_keys(settings)
    station, pdf = renewed.station_cert, renewed.pdf_cert
    check_signing_keys(renewed)
    _pdf(renewed, Trust([station]), tmp_path, registry)
    assert renewed.fingerprint == keys.fingerprint and pdf.serial_number != old.cert.serial_number
    assert station.not_valid_before_utc <= pdf.not_valid_before_utc
    assert pdf.not_valid_after_utc <= station.not_valid_after_utc
    assert station_keys(settings).pdf_cert == pdf       # issued once, then kept


def test_the_station_refuses_to_sign_pdfs_with_an_expired_pdf_certificate(
        keys: StationKeys) -> None:
    expired = dataclasses.replace(keys, pdf_cert=_pdf_under_old_station(keys, (-30, -1)).cert)
    with pytest.raises(UsageError) as caught:
        check_signing_keys(expired)
    assert f"this station's PDF certificate cannot sign: le certificat « CN={NAME} (PDF) » a " \
           "expiré le" in str(caught.value)
    assert "keys/pdf.crt is issued again under the station certificate when the keys are " \
           "loaded: run the command again, or restart the station" in str(caught.value)
