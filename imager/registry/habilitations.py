"""Habilitations as data: the level (1 to 3) each action at the bench needs, from
the station profile's `habilitations` mapping (defaults below for what it does
not say). A person's level is set by a supervisor; the web pages refuse (403) an
action above it, whether the button was shown or the request made by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from imager.certify.identity import profile_path
from imager.errors import UsageError
from imager.registry.accounts import LEVELS
from imager.settings import Settings

# action: (default level, what it is, in French and English)
ACTIONS: dict[str, tuple[int, str, str]] = {
    "intake": (1, "réceptionner un don et scanner ses étiquettes",
               "record a donation and scan its labels"),
    "erase": (1, "effacer un disque selon la politique", "erase a drive by the policy"),
    "image": (1, "installer le système", "install the system"),
    "erase_method": (2, "choisir une autre méthode que la politique (firmware…)",
                     "choose a method other than the policy's (firmware…)"),
    "override_triage": (2, "orienter une machine contre la proposition du tri",
                        "orient a machine against the triage's proposal"),
    "agents": (2, "approuver, appairer, révoquer des agents",
               "approve, pair, revoke agents"),
    "send_to_destruction": (2, "envoyer un disque à la destruction",
                            "send a drive to destruction"),
    "destroy": (3, "enregistrer une destruction physique", "record a physical destruction"),
    "withdraw": (3, "retirer un document", "withdraw a document"),
}


@dataclass(frozen=True)
class Habilitations:
    needed: dict[str, int] = field(default_factory=lambda: {a: d[0] for a, d in
                                                            ACTIONS.items()})

    def allows(self, level: int, action: str) -> bool:
        return level >= self.needed[action]

    def granted(self, level: int) -> dict[str, bool]:
        """Each action: whether a person of `level` may do it (what a page offers)."""
        return {action: level >= needed for action, needed in self.needed.items()}


def load(settings: Settings) -> Habilitations:
    """The station profile's habilitations (UsageError naming each bad entry)."""
    path = profile_path(settings)
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read the station profile {path}: {exc}") from exc
    given = data.get("habilitations") if isinstance(data, dict) else None
    if given is None:
        return Habilitations()
    if not isinstance(given, dict):
        raise UsageError(f"{path}: habilitations must map actions to a level (1 to 3), "
                         f"e.g. `erase: 1`")
    problems = [f"habilitations.{a}: unknown action; known: {', '.join(ACTIONS)}"
                for a in given if a not in ACTIONS]
    problems += [f"habilitations.{a}: {v!r} is not a level; use 1, 2 or 3"
                 for a, v in given.items() if a in ACTIONS and v not in LEVELS]
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    return Habilitations({**Habilitations().needed, **given})
