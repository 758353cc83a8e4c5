"""Proof of possession: every agent request is signed with the agent's own key.

An agent holds an Ed25519 key pair made on its first start; the station knows
only the public key, enrolled one agent at a time. Each request carries four
headers: the key's id (sha256 of the raw public key), the time, a nonce, and an
Ed25519 signature over the method, the path with its query, the sha256 of the
body, the time and the nonce. A stolen header set is good for one request
within the time window, never for another request or another body; the
station refuses a nonce it has seen.

Stations sign their pushes to the network's portal the same way, with their station
key and another scheme (PUSH_SCHEME), so that no signed request of one kind can
pass for the other.

Why signatures rather than mutual TLS: the proof then holds end to end, also
on the loopback HTTP the station's own dock agent uses and behind a
TLS-terminating proxy, and the station reads the agent's identity from the
request itself (uvicorn passes no client certificate to the application).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SCHEME = "imager-agent-v1"
PUSH_SCHEME = "imager-station-push-v1"
KEY, TIME, NONCE, SIGNATURE = ("X-Imager-Key", "X-Imager-Time", "X-Imager-Nonce",
                               "X-Imager-Signature")
WINDOW = 60.0           # seconds a signed request may be early or late (clock skew)


class BadProof(ValueError):
    """A request whose proof does not hold; the message says which part."""


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The raw public key, hex (64 characters)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def key_id(public_key_hex: str) -> str:
    """The id of a public key: sha256 of its raw bytes, hex."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def fingerprint(public_key_hex: str) -> str:
    """What a technician compares on the agent's screen: 4 groups of 4 hex digits."""
    kid = key_id(public_key_hex).upper()
    return "-".join(kid[i:i + 4] for i in range(0, 16, 4))


def message(method: str, target: str, body: bytes, at: str, nonce: str,
            scheme: str = SCHEME) -> bytes:
    """What is signed: scheme, method, path and query, body hash, time, nonce."""
    return "\n".join((scheme, method.upper(), target, hashlib.sha256(body).hexdigest(), at,
                      nonce)).encode()


def sign(key: Ed25519PrivateKey, method: str, target: str, body: bytes,
         *, now: float | None = None, scheme: str = SCHEME) -> dict[str, str]:
    """The headers that prove `key` made this request."""
    at, nonce = f"{now if now is not None else time.time():.3f}", secrets.token_hex(16)
    signature = key.sign(message(method, target, body, at, nonce, scheme))
    return {KEY: key_id(public_hex(key)), TIME: at, NONCE: nonce,
            SIGNATURE: base64.urlsafe_b64encode(signature).decode()}


@dataclass(frozen=True)
class Proof:
    """The proof headers of a request, as received."""

    key_id: str
    at: str             # as written (and signed)
    nonce: str
    signature: bytes

    @classmethod
    def read(cls, headers: dict[str, str]) -> Proof:
        """The proof of a request's headers (BadProof naming what is missing)."""
        missing = [h for h in (KEY, TIME, NONCE, SIGNATURE) if not headers.get(h.lower())]
        if missing:
            raise BadProof(f"requête non signée / unsigned request: missing {', '.join(missing)}"
                           " (an agent signs every request with its own key)")
        try:
            at = headers[TIME.lower()]
            float(at)
            return cls(headers[KEY.lower()], at, headers[NONCE.lower()],
                       base64.urlsafe_b64decode(headers[SIGNATURE.lower()]))
        except (ValueError, TypeError) as exc:
            raise BadProof(f"malformed proof headers ({exc})") from exc

    def check(self, public_key_hex: str, method: str, target: str, body: bytes,
              *, now: float | None = None, scheme: str = SCHEME) -> None:
        """BadProof unless the signature is the key's over this very request, in time."""
        skew = (now if now is not None else time.time()) - float(self.at)
        if abs(skew) > WINDOW:
            raise BadProof(f"signed {skew:+.0f} s away from the station's clock (at most "
                           f"{WINDOW:.0f} s): set the agent's clock")
        if not 16 <= len(self.nonce) <= 64:
            raise BadProof("the nonce must be 16 to 64 characters")
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(
                self.signature, message(method, target, body, self.at, self.nonce, scheme))
        except (InvalidSignature, ValueError) as exc:
            raise BadProof("the signature is not this agent's over this request") from exc


@dataclass
class Replays:
    """The nonces seen within the window: a request signed again with one of them is a
    replay."""

    _seen: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, proof: Proof) -> None:
        """BadProof if `proof`'s nonce was seen within the window; else remember it."""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: t for k, t in self._seen.items() if t > now}
            seen = self._seen.get((proof.key_id, proof.nonce))
            if seen is not None and seen > now:
                raise BadProof("requête rejouée / replayed request (nonce already seen)")
            self._seen[(proof.key_id, proof.nonce)] = now + 2 * WINDOW

