"""Who issues certificates: the station profile (organisation, place, contact).

Read from IMAGER_STATION_PROFILE, else <data dir>/station.yaml, else the
example shipped in profiles/station.yaml.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imager.errors import UsageError
from imager.settings import Settings

SHIPPED = Path(__file__).resolve().parents[2] / "profiles" / "station.yaml"
_FIELDS = ("organisation", "station", "location", "country", "phone", "email", "validator",
           "verify_url", "habilitations")     # habilitations: imager.registry.habilitations


@dataclass(frozen=True)
class StationProfile:
    organisation: str
    station: str
    location: str = ""
    country: str = "FR"
    phone: str = ""
    email: str = ""
    validator_name: str = ""
    validator_title: str = ""
    verify_url: str = ""
    source: str = ""

    def issuer(self) -> dict[str, Any]:
        """The issuer block of a record (without key and software, added by the signer)."""
        return {"organisation": self.organisation, "station": self.station,
                "location": self.location or None, "country": self.country,
                "phone": self.phone or None, "email": self.email or None}

    def validator(self) -> dict[str, Any]:
        return {"name": self.validator_name or None, "title": self.validator_title or None,
                "organisation": self.organisation}


def profile_path(settings: Settings) -> Path:
    env = os.environ.get("IMAGER_STATION_PROFILE")
    if env:
        return Path(env)
    local = settings.data_dir / "station.yaml"
    return local if local.exists() else SHIPPED


def load_profile(settings: Settings) -> StationProfile:
    path = profile_path(settings)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UsageError(f"cannot read the station profile {path}: {exc.strerror} "
                         "(set IMAGER_STATION_PROFILE to an existing file)") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"the station profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"the station profile {path} must be a mapping of {', '.join(_FIELDS)}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise UsageError(f"{path}: unknown field(s) {', '.join(unknown)}; "
                         f"known fields: {', '.join(_FIELDS)}")
    if not str(data.get("organisation") or "").strip():
        raise UsageError(f"{path}: `organisation` is required (it is printed on every "
                         "certificate)")
    country = str(data.get("country") or "FR")
    if len(country) != 2 or not country.isalpha():
        raise UsageError(f"{path}: country {country!r} must be a two-letter ISO code, e.g. FR")
    val = data.get("validator") or {}
    if not isinstance(val, dict):
        raise UsageError(f"{path}: validator must be a mapping with name and title")
    return StationProfile(
        organisation=str(data["organisation"]).strip(),
        station=str(data.get("station") or socket.gethostname()),
        location=str(data.get("location") or ""), country=country.upper(),
        phone=str(data.get("phone") or ""), email=str(data.get("email") or ""),
        validator_name=str(val.get("name") or ""), validator_title=str(val.get("title") or ""),
        verify_url=str(data.get("verify_url") or ""), source=str(path))
