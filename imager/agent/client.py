"""The agent's side of the station API (httpx): every request signed with the
agent's own key (imager.protocol.proof), over HTTPS pinned to the station's CA
(imager.agent.tls) or HTTP on loopback."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imager.agent.tls import StationTrust, not_trusted_message, verify_failure
from imager.errors import ImagerError, UsageError
from imager.imaging.source import Source, open_source
from imager.protocol.proof import public_hex, sign


class StationUnreachable(ImagerError):
    """No answer (network, station down): keep the events, try again later."""


class StationNotTrusted(StationUnreachable):
    """The station's certificate does not chain to the pinned CA, does not name
    it, or is out of its dates: nothing is sent to it (the spool keeps it all)."""


class StationRefused(ImagerError):
    """The station answered no (unknown or revoked agent, bad request): retrying
    will not help. `bad_events`: the positions of the events a 422 named in a
    batch sent."""

    def __init__(self, message: str, *, status: int = 400,
                 bad_events: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.status, self.bad_events = status, bad_events


def _bad_events(body: Any) -> tuple[int, ...]:
    """The positions in `events` that a 422's details name (body.events.N...)."""
    details = body.get("detail") if isinstance(body, dict) else None
    found = {d["loc"][2] for d in details or () if isinstance(d, dict)
             and isinstance(d.get("loc"), list) and d["loc"][:2] == ["body", "events"]
             and len(d["loc"]) > 2 and isinstance(d["loc"][2], int)}
    return tuple(sorted(found))


@dataclass(frozen=True)
class Enrolment:
    """What the station said of this agent: active (with the erase policy) or
    pending (with the pairing code to show a technician)."""

    agent: int
    state: str
    fingerprint: str
    pairing_code: str | None
    policy: str | None


class ProofAuth(httpx.Auth):
    """Signs every request with the agent's key (method, path and query, body)."""

    requires_request_body = True

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(sign(self.key, request.method,
                                    request.url.raw_path.decode("latin-1"), request.content))
        yield request


# What the station may tell a laptop's agent: "restart" (the laptop is done).
LAPTOP_NEXT = ("restart",)


@dataclass(frozen=True)
class Work:
    """The station's answer to "what next?"."""

    jobs: list[dict[str, Any]]
    laptop: str | None = None


class StationClient:
    """The station API at `url`, as the agent holding `key` (None: only `health`,
    which needs no proof); an https URL needs `trust` (the pinned CA)."""

    def __init__(self, url: str, key: Ed25519PrivateKey | None, *,
                 trust: StationTrust | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.key, self.trust = key, trust
        self.auth = ProofAuth(key) if key is not None else None
        if self.url.startswith("https:") and trust is None:
            raise UsageError(f"station {self.url}: HTTPS needs the station's CA (--ca)")
        self._extensions = {"sni_hostname": trust.name} if trust and trust.name else {}
        self._verify = trust.context() if trust else True
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=self._verify,
                                  auth=self.auth)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; no answer, or a station not trusted, is StationUnreachable."""
        try:
            return self._http.request(method, path, extensions=self._extensions, **kw)
        except httpx.HTTPError as exc:
            failed = verify_failure(exc)
            if failed is not None:
                raise StationNotTrusted(not_trusted_message(self.url, self.trust,
                                                            failed)) from exc
            raise StationUnreachable(f"station {self.url} unreachable: {exc}") from exc

    def health(self) -> None:
        """Reach the station once: StationNotTrusted says its certificate is
        refused, StationUnreachable that it does not answer."""
        resp = self._request("GET", "/api/v1/health")
        if resp.status_code != 200:
            raise StationUnreachable(f"station {self.url} failed: {resp.status_code}")

    def _call(self, method: str, path: str, *, timeout: float | None = None,
              **kw: Any) -> Any:
        resp = self._request(method, path, timeout=timeout or self._http.timeout, **kw)
        if resp.status_code >= 500:
            raise StationUnreachable(f"station {self.url} failed: {resp.status_code}")
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            detail = body.get("error", resp.text) if isinstance(body, dict) else resp.text
            raise StationRefused(f"station {self.url} refused {method} {path}: {detail}",
                                 status=resp.status_code, bad_events=_bad_events(body))
        return resp.json()

    def enrol(self, *, name: str, kind: str, host: str, info: dict[str, Any] | None = None,
              boot_token: str | None = None, macs: tuple[str, ...] = (),
              serial: str | None = None) -> Enrolment:
        """Enrol this agent's key (again: the station then says its state)."""
        assert self.key is not None, "an agent enrols with its key"
        return _enrolment(self._call("POST", "/api/v1/agents", json={
            "public_key": public_hex(self.key), "name": name, "kind": kind, "host": host,
            "info": info, "boot_token": boot_token, "macs": list(macs), "serial": serial}))

    def me(self) -> Enrolment:
        """This agent's state now (a pending agent asks until a technician decides)."""
        return _enrolment(self._call("GET", "/api/v1/agents/me"))

    def send(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self._call("POST", "/api/v1/events",
                                                   json={"events": events})["results"]
        return results

    def next_work(self, wait: float) -> Work:
        """The jobs to run now (long-polls up to `wait` seconds for one), and for a
        laptop's agent what the station says of the laptop."""
        answer = self._call("GET", "/api/v1/jobs/next", params={"wait": wait},
                            timeout=wait + 10)
        laptop = answer.get("laptop")
        return Work(list(answer["jobs"]), laptop if laptop in LAPTOP_NEXT else None)

    def verify_seed(self, job_id: int) -> str:
        """The seed of job `job_id`'s sampled verification (StationRefused, status 409,
        while its write passes are not all reported)."""
        return str(self._call("POST", f"/api/v1/jobs/{job_id}/verify-seed")["seed"])

    def fetch(self, path: str) -> bytes:
        """A small file from the station (e.g. an image's bmap)."""
        resp = self._request("GET", path)
        if resp.status_code != 200:
            try:
                said = resp.json().get("error", resp.text)
            except (ValueError, AttributeError):
                said = resp.text
            raise StationRefused(f"station {self.url} refused GET {path}: {resp.status_code} "
                                 f"{said}", status=resp.status_code)
        return resp.content

    def source(self, path: str) -> Source:
        """A large file of the station (an image), streamed with every request
        signed and the same trust as the API."""
        return open_source(self.url + path, auth=self.auth, verify=self._verify,
                           sni_hostname=self.trust.name if self.trust else None)

    def close(self) -> None:
        self._http.close()


def _enrolment(data: dict[str, Any]) -> Enrolment:
    return Enrolment(int(data["id"]), str(data["state"]), str(data["fingerprint"]),
                     data.get("pairing_code"), data.get("policy"))
