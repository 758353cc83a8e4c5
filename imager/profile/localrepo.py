"""The exact .deb files a build used, kept as a flat apt repository beside the image.

    repo/Packages     one stanza per package: the archive's own (Priority, Essential,
                      Depends... as apt saw them), Filename pointing into pool/
    repo/Release      Codename = the suite (mmdebstrap picks the essential set by it)
    repo/pool/*.deb

Rebuilding from it (`rootfs.Origin(local_repo=...)`) needs no network and, the
files being the same, gives the same root tar."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host.run import run
from imager.imaging.catalogue import file_sha256
from imager.profile.debs import (
    Package,
    deb_file_name,
    parse_stanzas,
    render_stanza,
)

_DROPPED = ("MD5sum", "SHA1", "SHA512", "Filename", "Size", "SHA256")


@dataclass(frozen=True)
class LocalRepo:
    root: Path

    @property
    def pool(self) -> Path:
        return self.root / "pool"

    @property
    def index(self) -> Path:
        return self.root / "Packages"

    def packages(self) -> tuple[Package, ...]:
        """The packages of the repository, with their .deb sha256."""
        return tuple(sorted(Package(s["Package"], s["Version"], s["Architecture"], s["SHA256"])
                            for s in parse_stanzas(self.index.read_text())))


def _archive_stanzas(lists: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """Every stanza of apt's Packages index files, by (name, version, arch)."""
    found: dict[tuple[str, str, str], dict[str, str]] = {}
    for index in sorted(lists.glob("*_Packages")):
        for stanza in parse_stanzas(index.read_text(errors="replace")):
            key = (stanza.get("Package", ""), stanza.get("Version", ""),
                   stanza.get("Architecture", ""))
            found.setdefault(key, stanza)
    return found


def _deb_stanza(deb: Path) -> dict[str, str]:
    """The control stanza of a .deb (for the profile's own packages)."""
    stanzas = parse_stanzas(run(["dpkg-deb", "--field", str(deb)]).stdout)
    if not stanzas:
        raise ImagerError(f"paquet illisible / {deb} has no control fields: rebuild it")
    return stanzas[0]


def keep(installed: Sequence[Package], *, debs: Path, lists: Path,
         local_debs: Iterable[Path], root: Path, suite: str) -> tuple[Package, ...]:
    """Move the .deb file of each installed package into `root`/pool and write the
    index; return the packages with their .deb sha256. ImagerError names a package
    whose .deb the build did not keep."""
    repo = LocalRepo(root)
    repo.pool.mkdir(parents=True, exist_ok=True)
    archive = _archive_stanzas(lists)
    own = {(s["Package"], s["Version"], s["Architecture"]): (deb, s)
           for deb in local_debs for s in [_deb_stanza(deb)]}
    stanzas, kept = [], []
    for package in installed:
        key = (package.name, package.version, package.arch)
        if key in own:
            source, stanza = own[key]
        else:
            source, stanza = debs / deb_file_name(package), archive.get(key, {})
        if not source.is_file() or not stanza:
            raise ImagerError(f"paquet non gardé / the build kept no .deb for {package.key} "
                              f"(looked for {source}): build again without the cache")
        target = repo.pool / deb_file_name(package)
        _place(source, target, move=key not in own)
        digest = file_sha256(target)
        stanzas.append({**{k: v for k, v in stanza.items() if k not in _DROPPED},
                        "Filename": f"pool/{target.name}",
                        "Size": str(target.stat().st_size), "SHA256": digest})
        kept.append(Package(package.name, package.version, package.arch, digest))
    _write_index(repo, stanzas, suite)
    return tuple(sorted(kept))


def _place(source: Path, target: Path, *, move: bool) -> None:
    if target.exists():
        target.unlink()
    if move:
        os.replace(source, target) if source.stat().st_dev == target.parent.stat().st_dev \
            else shutil.move(source, target)
    else:
        shutil.copyfile(source, target)


def _write_index(repo: LocalRepo, stanzas: list[dict[str, str]], suite: str) -> None:
    stanzas.sort(key=lambda s: (s["Package"], s["Architecture"]))
    text = "".join(render_stanza(s) for s in stanzas).encode()
    repo.index.write_bytes(text)
    digest, size = hashlib.sha256(text).hexdigest(), len(text)
    arch = sorted({s["Architecture"] for s in stanzas} - {"all"}) or ["all"]
    repo.root.joinpath("Release").write_text(
        f"Origin: imager\nLabel: imager build\nSuite: {suite}\nCodename: {suite}\n"
        f"Architectures: {' '.join(arch)} all\nComponents: main\n"
        "Description: the exact .deb files of one OS image build\n"
        f"SHA256:\n {digest} {size} Packages\n")
