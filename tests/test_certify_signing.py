"""Canonical JSON, station keys, signed records and their offline check."""

from __future__ import annotations

import copy
import json
import random
import stat
from pathlib import Path

import pytest

from imager.certify.canonical import canonical_bytes
from imager.certify.identity import load_profile
from imager.certify.keys import StationKeys, fingerprint, station_keys
from imager.certify.schema import check, problems
from imager.certify.signing import Checks, Trust, VerificationFailed, sign_document
from imager.certify.verify import check_json
from imager.errors import UsageError
from imager.settings import Settings

SAMPLES = Path(__file__).parent / "data" / "certificates"


def test_canonical_json_follows_rfc8785_examples() -> None:
    # RFC 8785 §3.2.2 and §3.2.3 examples
    value = {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
             "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
             "literals": [None, True, False]}
    assert canonical_bytes(value) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}').encode()
    keys = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6,
            "\u00f6": 7}
    order = [k for k in json.loads(canonical_bytes(keys))]
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonical_bytes({"a": 1.0, "b": -0.0}) == b'{"a":1,"b":0}'
    with pytest.raises(UsageError):
        canonical_bytes({"x": float("nan")})


@pytest.fixture
def keys(settings: Settings) -> StationKeys:
    return station_keys(settings)


def test_keys_are_created_once_private_and_certified(settings: Settings,
                                                       keys: StationKeys) -> None:
    kdir = settings.data_dir / "keys"
    for name in ("station.key", "pdf.key"):
        assert stat.S_IMODE((kdir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(kdir.stat().st_mode) == 0o700
    again = StationKeys.open(kdir, load_profile(settings))
    assert again.fingerprint == keys.fingerprint
    assert fingerprint(again.pdf_cert) == fingerprint(keys.pdf_cert)
    keys.pdf_cert.verify_directly_issued_by(keys.station_cert)
    (kdir / "station.key").chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        StationKeys.open(kdir, load_profile(settings))


def _sample() -> dict:
    return json.loads((SAMPLES / "sample-erasure.json").read_text(encoding="utf-8"))


def test_sample_record_matches_schema_and_bad_fields_are_named() -> None:
    record = _sample()
    check(record)
    bad = copy.deepcopy(record)
    del bad["media"]["serial"]
    bad["destination"] = "poubelle"
    bad["verification"]["coverage"] = 2
    found = problems(bad)
    assert any(p.startswith("media:") and "serial" in p for p in found), found
    assert any(p.startswith("destination:") for p in found), found
    assert any(p.startswith("verification.coverage:") for p in found), found
    with pytest.raises(UsageError, match="record refused"):
        check(bad)


def test_an_erasure_certificate_needs_a_passed_verification() -> None:
    record = _sample()
    record["verification"]["ok"] = False
    assert any("verification.ok" in p for p in problems(record))
    record = _sample()
    record["outcome"]["result"] = "failed"
    assert problems(record)


@pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")
def test_signed_record_verifies_and_every_byte_change_is_caught(keys: StationKeys) -> None:
    record = _sample()
    record["issuer"]["key"] = keys.fingerprint
    signed = sign_document(record, keys)
    trust = Trust([keys.station_cert])
    assert check_json(signed, trust, Checks()) == record
    rng = random.Random(4)
    positions = list(range(len(signed)))
    rng.shuffle(positions)
    for pos in positions[:600]:
        mutated = bytearray(signed)
        mutated[pos] = (mutated[pos] + rng.randrange(1, 256)) % 256
        with pytest.raises(VerificationFailed):
            check_json(bytes(mutated), trust, Checks())


def test_another_station_key_is_not_trusted(settings: Settings, tmp_path: Path,
                                             keys: StationKeys) -> None:
    other = StationKeys.open(tmp_path / "other-keys", load_profile(settings))
    signed = sign_document(_sample(), other)
    checks = Checks()
    with pytest.raises(VerificationFailed, match="neither the trusted certificate"):
        check_json(signed, Trust([keys.station_cert]), checks)
    assert checks.lines[-1][0] is False
