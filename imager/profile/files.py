"""Where profiles are: `profiles/<name>/profile.yaml`, found by name, folder or file."""

from __future__ import annotations

import re
from pathlib import Path

from imager.profile.checker import nearest
from imager.profile.model import ProfileError

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FILE = "profile.yaml"
NAME = re.compile(r"[a-z0-9][a-z0-9-]*")     # a profile's name, also its folder's


def names(root: Path = PROFILES) -> list[str]:
    """The profiles in `root`: each folder holding a profile.yaml."""
    return sorted(p.parent.name for p in root.glob(f"*/{FILE}"))


def locate(name_or_path: str | Path, *, root: Path = PROFILES) -> Path:
    """The profile.yaml meant by a name (a folder of `root`), a folder or a file."""
    given = Path(name_or_path)
    if given.is_dir():
        given = given / FILE
    if given.is_file():
        return given
    if isinstance(name_or_path, str) and NAME.fullmatch(name_or_path):
        if (root / name_or_path / FILE).is_file():
            return root / name_or_path / FILE
        known = names(root)
        near = nearest(name_or_path, known)
        hint = f"did you mean {near!r}? " if near else ""
        raise ProfileError(name_or_path, [
            f"no profile named {name_or_path!r} in {root}: {hint}the profiles are "
            f"{', '.join(known) or '(none)'} (`imager profile list`)"])
    raise ProfileError(str(name_or_path), [f"{name_or_path} does not exist: give a profile's "
                                           f"name or the path of its {FILE}"])


def shown(path: Path) -> str:
    """The path as a person would type it: relative to the current folder if inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
