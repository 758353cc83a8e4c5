"""Field-by-field differences between two JSON-like values (two profiles, two builds'
manifests), as data: pure functions, no printing.

Mappings are compared key by key, lists of mappings item by item, and lists of plain
values (package names) as sets: what was added, what was removed, or only the order.
A change's `path` reads like a key path of the YAML file: `packages.desktop`,
`browser.bookmarks[1].url`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from imager.profile.spec import Profile

Kind = Literal["changed", "added", "removed", "reordered"]
# What two profiles may differ in without being different profiles.
NOT_CONTENT = ("source", "digest", "welcome_path")


@dataclass(frozen=True)
class Change:
    """One difference. `added`/`removed`: a key or item present on one side only, or
    the values added to / removed from a list of plain values."""

    path: str
    kind: Kind
    before: Any = None
    after: Any = None


def diff(before: Any, after: Any, *, path: str = "",
         ignore: Collection[str] = ()) -> list[Change]:
    """The changes from `before` to `after`; keys whose path is in `ignore` are skipped."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return _mappings(before, after, path, ignore)
    if _is_list(before) and _is_list(after):
        if all(_is_plain(x) for x in (*before, *after)):
            return _plain_lists(before, after, path)
        return _lists(before, after, path, ignore)
    return [] if before == after else [Change(path, "changed", before, after)]


def diff_profiles(a: Profile, b: Profile) -> list[Change]:
    """The differences of content between two profiles (where they were read from aside)."""
    return diff(a.to_dict(), b.to_dict(), ignore=NOT_CONTENT)


def describe(change: Change) -> str:
    """One line for a person: `~ version: "2026.12.1" → "2026.12.2"`,
    `+ packages.fonts: fonts-noto-core`, `- extra_packages[0]: {...}`."""
    where = change.path or "(tout / all)"
    if change.kind == "changed":
        return f"~ {where}: {_show(change.before)} → {_show(change.after)}"
    if change.kind == "reordered":
        return f"↕ {where}: {_show(change.before)} → {_show(change.after)}"
    sign, value = ("+", change.after) if change.kind == "added" else ("-", change.before)
    if _is_list(value) and all(_is_plain(x) for x in value):
        return f"{sign} {where}: {', '.join(str(x) for x in value)}"
    return f"{sign} {where}: {_show(value)}"


def _mappings(before: Mapping[str, Any], after: Mapping[str, Any], path: str,
              ignore: Collection[str]) -> list[Change]:
    changes: list[Change] = []
    for key in [*before, *(k for k in after if k not in before)]:
        sub = f"{path}.{key}" if path else str(key)
        if sub in ignore:
            continue
        if key not in after:
            changes.append(Change(sub, "removed", before=before[key]))
        elif key not in before:
            changes.append(Change(sub, "added", after=after[key]))
        else:
            changes += diff(before[key], after[key], path=sub, ignore=ignore)
    return changes


def _lists(before: Sequence[Any], after: Sequence[Any], path: str,
           ignore: Collection[str]) -> list[Change]:
    changes: list[Change] = []
    for i in range(max(len(before), len(after))):
        sub = f"{path}[{i}]"
        if i >= len(after):
            changes.append(Change(sub, "removed", before=before[i]))
        elif i >= len(before):
            changes.append(Change(sub, "added", after=after[i]))
        else:
            changes += diff(before[i], after[i], path=sub, ignore=ignore)
    return changes


def _plain_lists(before: Sequence[Any], after: Sequence[Any], path: str) -> list[Change]:
    old, new = Counter(before), Counter(after)
    removed = [x for x in before if (old - new)[x] > 0]
    added = [x for x in after if (new - old)[x] > 0]
    changes = []
    if removed:
        changes.append(Change(path, "removed", before=list(dict.fromkeys(removed))))
    if added:
        changes.append(Change(path, "added", after=list(dict.fromkeys(added))))
    if not changes and list(before) != list(after):
        changes.append(Change(path, "reordered", list(before), list(after)))
    return changes


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
