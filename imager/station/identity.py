"""Who is calling, proven on every request: the agent's own key.

Every agent request is signed (imager.protocol.proof). The station finds the
agent by the key id the request names, checks the signature over this very
request, refuses a request signed too long ago or one whose nonce it has seen
(a replay), and refuses a revoked agent, or a pending one outside enrolment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from imager.protocol.proof import BadProof, Proof, Replays, key_id
from imager.registry import agents
from imager.station.liveness import Liveness
from imager.store.db import Registry, utcnow
from imager.store.models import Agent


class Unauthenticated(PermissionError):
    """No valid proof (401): unsigned, unknown key, bad signature, replay."""


class Forbidden(PermissionError):
    """A known agent that may not do this (403): revoked, or not yet enrolled."""


@dataclass(frozen=True)
class Request:
    """What a proof covers: the request as the station received it."""

    headers: Mapping[str, str]          # lower-case names
    method: str
    target: str                         # path and query, as sent
    body: bytes


@dataclass
class AgentAuth:
    registry: Registry
    liveness: Liveness
    replays: Replays = field(default_factory=Replays)

    def enrol(self, request: Request, public_key: str, **details: Any) -> agents.Enrolled:
        """Enrol the key the request is signed with (see registry.agents.enrol)."""
        try:
            bytes.fromhex(public_key)
            if len(public_key) != 64:
                raise ValueError("not 32 bytes")
        except ValueError as exc:
            raise Unauthenticated(f"public_key: an Ed25519 public key, 64 hex digits ({exc})"
                                  ) from exc
        proof = self._proof(request)
        if proof.key_id != key_id(public_key):
            raise Unauthenticated("the request is not signed with the key it enrols")
        self._check(proof, public_key, request)
        with self.registry.session() as s:
            try:
                return agents.enrol(s, public_key, **details)
            except PermissionError as exc:
                raise Forbidden(str(exc)) from exc

    def authenticate(self, request: Request, *, pending_ok: bool = False) -> int:
        """The id of the agent that signed `request` (Unauthenticated, Forbidden)."""
        proof = self._proof(request)
        with self.registry.session(readonly=True) as s:
            agent = s.scalar(select(Agent).where(Agent.key_id == proof.key_id))
            if agent is None or agent.public_key is None:
                raise Unauthenticated("clé inconnue / unknown agent key: enrol the agent "
                                      "(imager agent run enrols it at start)")
            agent_id, state, public_key = agent.id, agent.state, agent.public_key
            reason = agent.revoked_reason
        self._check(proof, public_key, request)
        if state == "revoked":
            raise Forbidden(f"agent {agent_id} révoqué / revoked: {reason}")
        if state != "active" and not pending_ok:
            raise Forbidden(f"agent {agent_id} attend un technicien / is waiting for a "
                            "technician: pairing code or approval (imager agents list)")
        self.liveness.heard(agent_id)
        return agent_id

    def state(self, agent_id: int) -> dict[str, Any]:
        """What an agent is told of itself."""
        with self.registry.session() as s:
            agent = s.get(Agent, agent_id)
            assert agent is not None
            agent.last_seen_at = utcnow()
            return agents.summary(agent)

    def _proof(self, request: Request) -> Proof:
        try:
            return Proof.read(dict(request.headers))
        except BadProof as exc:
            raise Unauthenticated(str(exc)) from exc

    def _check(self, proof: Proof, public_key: str, request: Request) -> None:
        try:
            proof.check(public_key, request.method, request.target, request.body)
            self.replays.check(proof)
        except BadProof as exc:
            raise Unauthenticated(str(exc)) from exc
