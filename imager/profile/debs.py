"""The Debian packages of a build: the resolved list (name, version, arch, sha256 of
the .deb), read from apt's simulation or from dpkg, and the .deb control stanzas."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# apt-get --simulate: "Inst libc6 (2.41-12 Debian:13.8/stable [amd64]) []"
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[(\S+)\]\)", re.MULTILINE)


@dataclass(frozen=True, order=True)
class Package:
    """One installed package; `sha256` is the .deb's, once the build fetched it."""

    name: str
    version: str
    arch: str
    sha256: str = ""

    @property
    def key(self) -> str:
        """name=version:arch, the form hashed into the build cache key."""
        return f"{self.name}={self.version}:{self.arch}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch,
                "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Package:
        return cls(str(data["name"]), str(data["version"]), str(data["arch"]),
                   str(data.get("sha256", "")))


def parse_simulated(output: str) -> tuple[Package, ...]:
    """The packages apt would install, from `apt-get --simulate` output (as printed
    by `mmdebstrap --simulate -v`); a package seen twice is kept once."""
    found = {(m[1], m[3]): Package(m[1], m[2], m[3]) for m in _INST.finditer(output)}
    return tuple(sorted(found.values()))


def parse_dpkg_query(output: str) -> tuple[Package, ...]:
    """`dpkg-query -W -f='${Package}\\t${Version}\\t${Architecture}\\n'` -> packages."""
    packages = []
    for line in output.splitlines():
        if line.strip():
            name, version, arch = line.split("\t")
            packages.append(Package(name, version, arch))
    return tuple(sorted(packages))


def unversioned(packages: Iterable[Package]) -> tuple[Package, ...]:
    """The same packages without their .deb hashes (what resolution can know)."""
    return tuple(sorted(Package(p.name, p.version, p.arch) for p in packages))


def deb_file_name(package: Package) -> str:
    """The name apt gives the .deb in its cache: name_version_arch.deb, ':' as %3a."""
    return f"{package.name}_{package.version.replace(':', '%3a')}_{package.arch}.deb"


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Debian control stanzas (Packages index, status file) as ordered dicts; a
    continuation line stays inside its field's value."""
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, ""
        elif line[0] in " \t" and last:
            current[last] += "\n" + line
        else:
            field, _, value = line.partition(":")
            last = field
            current[field] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def render_stanza(stanza: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in stanza.items()) + "\n"
