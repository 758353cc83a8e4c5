"""The live system's key follows today's versions (imager.boot.live_versions): what
is kept when the mirror cannot be reached, and a build that found other versions
than those resolved. The resolution itself, against the real mirror and PyPI, is
checked by tests/test_live_system.py (its manifest's `resolved`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imager.boot.live_versions import Resolved, check, newest_for_recipe
from imager.errors import ImagerError

RESOLVED = Resolved(("linux-image-6.12.118-amd64=6.12.118-1:amd64", "nvme-cli=2.13-2:amd64",
                     "shim-signed=1.47+15.8-1:amd64"),
                    ("pydantic-core==2.41.5", "pyyaml==6.0.4"))


def _os(cache: Path, name: str, **manifest: str) -> None:
    (cache / name).mkdir(parents=True)
    (cache / name / "os.json").write_text(json.dumps(manifest))


def test_offline_the_newest_build_of_the_same_recipe_is_taken(tmp_path: Path) -> None:
    _os(tmp_path, "os-a", recipe_key="r1", os_key="k-old", built="2026-11-02T10:00:00Z")
    _os(tmp_path, "os-b", recipe_key="r1", os_key="k-new", built="2026-12-01T10:00:00Z")
    _os(tmp_path, "os-c", recipe_key="r2", os_key="k-other", built="2026-12-05T10:00:00Z")
    _os(tmp_path, "os-d", os_key="k-before-versions", built="2026-12-06T10:00:00Z")
    (tmp_path / "os-e").mkdir()
    (tmp_path / "os-e" / "os.json").write_text("{broken")
    assert newest_for_recipe(tmp_path, "r1") == ("k-new", "2026-12-01T10:00:00Z")
    assert newest_for_recipe(tmp_path, "r3") is None


def test_a_build_with_the_versions_resolved_passes() -> None:
    check(RESOLVED, {"nvme-cli": "2.13-2", "busybox": "1:1.37.0-6"},
          [("shim-signed", "1.47+15.8-1"), ("linux-image-6.12.118-amd64", "6.12.118-1")],
          ["pydantic_core-2.41.5", "PyYAML-6.0.4"])


@pytest.mark.parametrize(("installed", "fetched", "wheels", "said"), [
    ({"nvme-cli": "2.13-3"}, [], [], "nvme-cli 2.13-3 (resolved 2.13-2)"),
    ({}, [("shim-signed", "1.48+15.9-1")], [], "shim-signed 1.48+15.9-1"),
    ({}, [], ["pydantic_core-2.41.6"], "pydantic_core 2.41.6 (resolved 2.41.5)"),
])
def test_versions_that_moved_during_the_build_are_refused(
        installed: dict[str, str], fetched: list[tuple[str, str]], wheels: list[str],
        said: str) -> None:
    with pytest.raises(ImagerError, match="the mirror changed during the build") as err:
        check(RESOLVED, installed, fetched, wheels)
    assert said in str(err.value)
