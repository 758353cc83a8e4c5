"""The technician's orientation of a machine (triage proposes, a person decides),
and the agents' liveness clock."""

from __future__ import annotations

from typing import Any

import pytest

from imager.errors import UsageError
from imager.registry import items, machines
from imager.station.liveness import Liveness
from imager.store.db import Registry, utcnow
from imager.store.models import Machine


def _machine(registry: Registry, proposal: dict[str, Any] | None,
             state: str = "inventoried") -> int:
    with registry.session() as s:
        m = Machine(state=state, created_at=utcnow(), serial="PF1ABCDE", proposal=proposal)
        s.add(m)
        s.flush()
        return m.id


def _orient(registry: Registry, machine_id: int, choice: str, why: str = "") -> dict[str, Any]:
    with registry.session() as s:
        m = machines.find_machine(s, str(machine_id))
        machines.orient(s, m, choice, actor="Lina", why=why)
        return machines.machine_summary(s, m, with_history=True)


COMPLETE = {"orientation": "parts", "complete": True, "unknown": [], "notes": [],
            "reasons": [{"rule_id": "ram-min", "measure": "ram_gib", "value": 2,
                         "outcome": "parts", "message_fr": "2 Gio", "message_en": "2 GiB"}]}


def test_confirming_a_complete_proposal_needs_no_reason(registry: Registry) -> None:
    view = _orient(registry, _machine(registry, COMPLETE), "parts")
    assert (view["state"], view["orientation"]) == ("to_parts", "parts")
    move, note = view["history"][-2:]
    assert (move["from"], move["to"]) == ("inventoried", "to_parts")
    assert note["kind"] == "orientation" and note["data"]["agrees"] is True
    assert note["data"]["reasons"][0]["rule_id"] == "ram-min"


def test_reuse_keeps_the_machine_on_its_way(registry: Registry) -> None:
    proposal = {**COMPLETE, "orientation": "reuse", "reasons": []}
    view = _orient(registry, _machine(registry, proposal), "reuse")
    assert (view["state"], view["orientation"]) == ("inventoried", "reuse")


@pytest.mark.parametrize("proposal", [
    COMPLETE,                                                   # overriding it
    {**COMPLETE, "orientation": "recycling", "complete": False,
     "unknown": ["battery_wear"]},                              # incomplete
    None,                                                       # never inventoried
])
def test_overriding_or_an_unsure_proposal_needs_a_reason(
        registry: Registry, proposal: dict[str, Any] | None) -> None:
    machine_id = _machine(registry, proposal)
    with pytest.raises(UsageError, match="--why"):
        _orient(registry, machine_id, "recycling")
    with registry.session(readonly=True) as s:
        m = s.get(Machine, machine_id)
        assert m is not None and m.orientation is None and not items.history(s, m)
    view = _orient(registry, machine_id, "recycling", why="écran fendu / cracked screen")
    assert view["state"] == "to_recycling"
    assert view["history"][-1]["reason"] == "écran fendu / cracked screen"


def test_bad_choice_and_illegal_move_are_refused(registry: Registry) -> None:
    machine_id = _machine(registry, COMPLETE, state="to_recycling")
    with pytest.raises(UsageError, match="use reuse, parts, recycling"):
        _orient(registry, machine_id, "sell")
    with pytest.raises(UsageError, match="cannot become to_parts"):
        _orient(registry, machine_id, "parts")
    with pytest.raises(Exception, match="no machine 'nope'"):
        with registry.session() as s:
            machines.find_machine(s, "nope")


def test_liveness_counts_silence_from_the_last_request() -> None:
    now = [100.0]
    live = Liveness(10.0, clock=lambda: now[0])
    live.heard(1)
    now[0] = 105.0
    live.heard(2)
    assert live.silent([1, 2, 3]) == {}
    now[0] = 111.0          # agent 1: 11 s; agent 3 never heard: counted from start
    assert live.silent([1, 2, 3]) == {1: 11.0, 3: 11.0}
    live.heard(1)
    assert live.silent([1, 2]) == {}
