"""The drive and machine lifecycle tables, tested as data."""

from __future__ import annotations

import pytest

from imager.errors import UsageError
from imager.registry.lifecycle import (
    DRIVE_TRANSITIONS,
    ITEM_LABELS_FR,
    MACHINE_TRANSITIONS,
    NEXT_STEPS,
    TRANSITIONS,
    check_item_move,
)

TABLES = pytest.mark.parametrize("table", [DRIVE_TRANSITIONS, MACHINE_TRANSITIONS],
                                 ids=["drive", "machine"])


def _reachable(table: dict[str, frozenset[str]], start: str,
               without: frozenset[str] = frozenset()) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in table[todo.pop()]:
            if nxt not in seen and nxt not in without:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@TABLES
def test_every_state_is_known_labelled_and_reachable(table: dict) -> None:
    assert all(targets <= set(table) for targets in table.values())
    assert set(table) <= set(ITEM_LABELS_FR)
    assert _reachable(table, "received") == set(table)


@TABLES
def test_no_way_to_hand_over_or_certify_without_a_verified_erasure(table: dict) -> None:
    # remove "erased" and nothing certified, ready or handed over can be reached
    blocked = _reachable(table, "received", without=frozenset({"erased"}))
    assert not {"certified", "ready", "handed_over", "imaged"} & blocked
    assert {s for s, moves in table.items() if "erased" in moves} <= {"erasing", "imaging"}
    assert not {"certified", "ready", "handed_over"} & _reachable(
        table, "received", without=frozenset({"certified"})) - {"certified"}


@TABLES
def test_failures_are_states_with_a_next_step_and_a_way_out(table: dict) -> None:
    for failure in ("erase_failed", "image_failed"):
        assert failure in table and table[failure], failure
        assert failure in NEXT_STEPS
    final = {s for s, moves in table.items() if not moves}
    assert final <= {"handed_over", "to_recycling", "destroyed"}


def test_a_drive_is_destroyed_only_through_to_destroy() -> None:
    assert [s for s, m in DRIVE_TRANSITIONS.items() if "destroyed" in m] == ["to_destroy"]
    assert "to_destroy" in NEXT_STEPS
    assert "to_destroy" in DRIVE_TRANSITIONS["erase_failed"]
    # a drive unplugged mid-job: its job fails, the drive is erase_failed / image_failed
    assert "erase_failed" in DRIVE_TRANSITIONS["erasing"]
    assert "image_failed" in DRIVE_TRANSITIONS["imaging"]


def test_check_item_move_names_the_legal_moves() -> None:
    check_item_move("drive", 1, "erasing", "erased")
    with pytest.raises(UsageError, match="legal moves: erasing, to_destroy"):
        check_item_move("drive", 7, "erase_failed", "certified")
    with pytest.raises(UsageError, match="final"):
        check_item_move("machine", 2, "handed_over", "ready")
    with pytest.raises(UsageError, match="unknown item kind"):
        check_item_move("printer", 1, "received", "inventoried")
    assert set(TRANSITIONS) == {"drive", "machine"}
