"""`python3 -m firstboot`: the first boot's entry points.

    --status       exit 0 if the person must be asked; otherwise end the first boot
                   (marker, unit disabled) and exit 3: nothing to ask
    --dialog       the GTK dialog (in the X session the unit starts)
    --from-stdin   the same account creation without a window, from JSON on stdin:
                   {"name": "...", "password": "...", "autologin": false}
    --root DIR     the system to act on (default "/"; tests give a throwaway root)
    --config FILE  default: config.json beside this program
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .logic import (
    Account,
    Command,
    Config,
    Step,
    WriteFile,
    account_problems,
    already_done,
    login_from_name,
)
from .system import ApplyError, apply_step, create_account, read_facts

CONFIG = Path(__file__).with_name("config.json")
NOTHING_TO_ASK = 3      # --status: the first boot is over (premier-demarrage checks it)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firstboot", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--status", action="store_true")
    mode.add_argument("--dialog", action="store_true")
    mode.add_argument("--from-stdin", action="store_true")
    parser.add_argument("--root", type=Path, default=Path("/"))
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--lang", choices=("fr", "en"), default="fr")
    args = parser.parse_args(argv)
    config = Config.from_json(args.config.read_text(encoding="utf-8"))
    why = already_done(read_facts(args.root, config))
    if why is not None:
        end_without_asking(config, args.root, why)
        return NOTHING_TO_ASK if args.status else 0
    if args.status:
        return 0
    if args.from_stdin:
        return from_stdin(config, args.root)
    from .dialog import run_dialog  # GTK is imported only here

    return run_dialog(config, args.root, lang=args.lang)


def end_without_asking(config: Config, root: Path, why: str) -> None:
    """Nothing to ask: make sure the first boot never runs again."""
    steps: list[Step] = [WriteFile(config.marker, f"skipped: {why}\n")]
    if config.unit:
        steps.append(Command(("systemctl", "disable", config.unit), may_fail=True))
    if not (root / config.marker.lstrip("/")).exists():
        for step in steps:
            apply_step(step, root)
    print(f"premier démarrage : rien à demander / nothing to ask: {why}", file=sys.stderr)


def from_stdin(config: Config, root: Path) -> int:
    """Create the account from {"name", "password", "autologin"} on stdin; print
    what was done as JSON. Exit 2 with the problems (French / English) if the
    form is not acceptable, 3 if a step failed."""
    data = json.load(sys.stdin)
    name, password = str(data.get("name", "")), str(data.get("password", ""))
    problems = account_problems(name, password, str(data.get("again", password)),
                                minimum=config.min_password)
    if problems:
        for p in problems:
            print(f"{p.say('fr')} / {p.say('en')}", file=sys.stderr)
        return 2
    facts = read_facts(root, config)
    account = Account(name, login_from_name(name, facts.users | facts.groups), password,
                      autologin=bool(data.get("autologin", False)))
    try:
        steps = create_account(account, root, config)
    except ApplyError as exc:
        print(f"premier démarrage : {exc}", file=sys.stderr)
        return 3
    print(json.dumps({"login": account.login, "steps": steps}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
