"""`imager --help` starts fast: it imports no command module and none of the heavy
libraries (the time itself is a benchmark's business, not a test's); each command
still finds its own module."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from imager.cli import COMMANDS, build_parser, parse_args

HEAVY = ("alembic", "sqlalchemy", "rich", "fastapi", "starlette", "uvicorn", "pydantic",
         "weasyprint", "cryptography", "pyhanko", "httpx", "jinja2", "yaml", "pyudev",
         "zstandard", "PIL", "segno")


# `python -m imager ARGS`, then the modules it loaded, as JSON on stderr.
RUN_AND_LIST = """
import json, runpy, sys
sys.argv[0] = "imager"
try:
    runpy.run_module("imager", run_name="__main__", alter_sys=True)
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*args: str) -> tuple[str, set[str]]:
    """The output of `python -m imager ARGS` and every module it imported."""
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST, *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, set(json.loads(proc.stderr.splitlines()[-1]))


def command_modules(modules: set[str]) -> list[str]:
    ours = {f"imager.cli.{c.module}" for c in COMMANDS.values()}
    return sorted(modules & ours)


def test_help_imports_nothing_heavy() -> None:
    out, modules = imported_by("--help")
    for name, command in COMMANDS.items():
        assert f"{name} " in out and command.summary.split(" / ")[0] in out
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert command_modules(modules) == []


def test_command_help_loads_only_its_module() -> None:
    out, modules = imported_by("donors", "--help")
    assert "import" in out and "list" in out
    assert command_modules(modules) == ["imager.cli.donors"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_is_registered_by_its_module(name: str) -> None:
    assert name in subcommands(build_parser(name))


def test_options_before_the_command_still_apply() -> None:
    args = parse_args(["--data-dir", "/x", "--db-url", "sqlite://", "methods", "--json"])
    assert (str(args.data_dir), args.db_url, args.command, args.json) == (
        "/x", "sqlite://", "methods", True)


def test_a_wrong_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["donor", "list"])
    assert exit_.value.code == 2
    assert "invalid choice: 'donor'" in capsys.readouterr().err
