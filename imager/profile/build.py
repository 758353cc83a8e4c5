"""`imager profile build`: a BuildSpec -> a reproducible disk image in the catalogue.

    build(spec, cache_dir=..., catalogue=..., keys=..., progress=...) -> BuiltImage

1. resolve: the exact packages (name, version, arch) a build would install now;
2. the cache key: sha256 of the spec, that list and this build code, so that a
   security update (a new version on the mirror) makes a new key, never a stale hit;
3. on a miss: root tar (mmdebstrap) -> local repository of the .deb files used ->
   raw disk (GPT, GRUB for BIOS and UEFI with shim);
4. into the catalogue with `imager.imaging.create` (zstd + bmap + manifest): the
   manifest's `os_build` holds the profile, its version, the resolved packages
   with each .deb's sha256 and the root tar's sha256; signed when keys are given.

A cache entry is <cache_dir>/<key>/: build.json (what was built), disk.raw
(sparse) and repo/ (the .deb files, a flat apt repository)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imager import __version__
from imager.certify.keys import StationKeys
from imager.errors import ImagerError
from imager.host.files import write_atomic
from imager.imaging import create as creating
from imager.imaging.catalogue import Catalogue, Entry
from imager.profile import buildkey, disk, localrepo, rootfs
from imager.profile.buildspec import BuildSpec
from imager.profile.debs import Package, unversioned

RECORD = "imager-os-build/1"
# The modules whose code decides what a build makes: their source is in the key.
_BUILD_CODE = ("build.py", "rootfs.py", "disk.py", "localrepo.py", "debs.py", "buildkey.py")
DISK_STEPS = ("extract", "grub-files", "partitions", "esp", "mkfs", "grub-bios", "holes")


@dataclass(frozen=True)
class BuildProgress:
    """One step's progress: `done` out of `total` (None: unknown) in `unit`
    ("packages", "bytes" or "steps"); `detail` says what is being done."""

    step: str                          # resolve, mmdebstrap, disk, compress, catalogue
    done: float
    total: float | None
    unit: str
    detail: str = ""


ProgressFn = Callable[[BuildProgress], None]


@dataclass(frozen=True)
class BuiltImage:
    """A build's result, from the cache or just made."""

    spec: BuildSpec
    key: str
    folder: Path                       # the cache entry
    record: dict[str, Any]             # build.json
    cached: bool
    entry: Entry | None = None         # the catalogue image, when a catalogue was given
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def raw(self) -> Path:
        return self.folder / "disk.raw"

    @property
    def repo(self) -> Path:
        return self.folder / "repo"

    @property
    def root_tar_sha256(self) -> str:
        return str(self.record["root_tar_sha256"])

    @property
    def packages(self) -> tuple[Package, ...]:
        return tuple(Package.from_dict(p) for p in self.record["packages"])


def code_version() -> str:
    """sha256 of this build code (its modules' source) and of imager's version."""
    here = Path(__file__).parent
    digest = hashlib.sha256(__version__.encode())
    for name in _BUILD_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def cache_key(spec: BuildSpec, packages: tuple[Package, ...]) -> str:
    """The build's content key: the spec, the resolved versions, the build code."""
    blob = json.dumps({"spec": buildkey.spec_data(spec),
                       "packages": [p.key for p in unversioned(packages)],
                       "code": code_version()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def image_version(spec: BuildSpec, key: str) -> str:
    """The catalogue version of a build: the profile's, plus the build key's start
    (two builds of one profile version differ when a package was updated)."""
    return f"{spec.version}+{key[:8]}"


def build(spec: BuildSpec, *, cache_dir: Path, catalogue: Path | None = None,
          keys: StationKeys | None = None, progress: ProgressFn | None = None) -> BuiltImage:
    """Build `spec`'s image, or reuse the cached build with the same key; put it
    into the catalogue folder `catalogue` when given (signed with `keys`)."""
    report = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    started = time.monotonic()
    creating.check_name(spec.name, "name")               # before, not after, the build
    creating.check_name(image_version(spec, "0" * 8), "version")
    report(BuildProgress("resolve", 0, None, "packages", f"{spec.suite}: {spec.mirror}"))
    scratch = cache_dir / "resolve" / f"{os.getpid()}"
    try:
        resolved = rootfs.resolve(spec, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds["resolve"] = time.monotonic() - started
    report(BuildProgress("resolve", len(resolved), len(resolved), "packages"))
    key = cache_key(spec, resolved)
    with _locked(cache_dir, key):
        folder = cache_dir / key[:24]
        cached = (folder / "build.json").is_file() and (folder / "disk.raw").is_file()
        if not cached:
            _build_into(spec, key, resolved, folder, report, seconds)
        record = json.loads((folder / "build.json").read_text())
    built = BuiltImage(spec, key, folder, record, cached, seconds=seconds)
    if catalogue is not None:
        step = time.monotonic()
        built = _catalogue(built, catalogue, keys, report)
        seconds["catalogue"] = time.monotonic() - step
    seconds["total"] = time.monotonic() - started
    return built


@contextmanager
def _locked(cache_dir: Path, key: str) -> Iterator[None]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".lock-{key[:24]}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_into(spec: BuildSpec, key: str, resolved: tuple[Package, ...], folder: Path,
                report: ProgressFn, seconds: dict[str, float]) -> None:
    work = folder.with_name(f"{folder.name}.work-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        step = time.monotonic()
        lines = _MmdebstrapProgress(len(resolved), report)
        root = rootfs.build_rootfs(spec, work, on_line=lines)
        lines.finished(len(root.packages))
        _check_resolved(spec, resolved, root.packages)
        packages = localrepo.keep(root.packages, debs=root.debs, lists=root.lists,
                                  local_debs=spec.local_debs, root=work / "repo",
                                  suite=spec.suite)
        seconds["rootfs"] = time.monotonic() - step
        step = time.monotonic()
        done = disk.make_disk(spec, root.tar, work / "disk.raw", work,
                              step=_DiskProgress(report))
        report(BuildProgress("disk", len(DISK_STEPS), len(DISK_STEPS), "steps", "ok"))
        seconds["disk"] = time.monotonic() - step
        record = _record(spec, key, root, packages, done, seconds)
        for scratch in (root.tar, root.debs, root.lists):
            shutil.rmtree(scratch) if scratch.is_dir() else scratch.unlink()
        write_atomic(work / "build.json", (json.dumps(record, indent=1) + "\n").encode())
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_resolved(spec: BuildSpec, resolved: tuple[Package, ...],
                    installed: tuple[Package, ...]) -> None:
    """The build installed what resolution said (else the mirror changed meanwhile).
    A resolved package may be missing at the end: dpkg removes a package all of whose
    files another one took over or the build excluded (docs), e.g. trixie's
    transitional lsb-base; but nothing may be installed that was not resolved."""
    extra = set(unversioned(installed)) - set(unversioned(resolved))
    if extra:
        moved = sorted(p.key for p in extra)
        raise ImagerError(f"le miroir a changé pendant la construction / the mirror changed "
                          f"during the build of {spec.name} ({', '.join(moved[:5])}): "
                          "build again")


def _record(spec: BuildSpec, key: str, root: rootfs.RootFs, packages: tuple[Package, ...],
            made: disk.Disk, seconds: dict[str, float]) -> dict[str, Any]:
    return {
        "format": RECORD, "key": key, "code": code_version(),
        "profile": spec.name, "profile_version": spec.version, "suite": spec.suite,
        "spec": buildkey.spec_data(spec), "spec_sha256": buildkey.spec_sha256(spec),
        "source_date_epoch": buildkey.source_date_epoch(spec),
        "root_tar_sha256": root.sha256, "root_tar_bytes": root.tar.stat().st_size,
        "kernel": made.kernel, "disk_bytes": made.size, "disk_ids": vars(made.ids),
        "packages": [p.as_dict() for p in packages],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def _catalogue(built: BuiltImage, folder: Path, keys: StationKeys | None,
               report: ProgressFn) -> BuiltImage:
    """The build's image in the catalogue folder (made once per build key)."""
    name, version = built.spec.name, image_version(built.spec, built.key)
    existing = Catalogue(folder).list()
    entry = next((e for e in existing if e.name == name and e.version == version), None)
    if entry is None:
        def compress(done: int, total: int) -> None:
            report(BuildProgress("compress", done, total, "bytes"))
        made = creating.create(built.raw, folder, name=name, version=version,
                               profile=built.spec.name, progress=compress)
        manifest = {**made.manifest, "os_build": os_build_manifest(built.record)}
        creating.write_manifest(made.files, manifest, keys)
        entry = Entry(made.files, manifest)
    elif keys is not None and not entry.signed:
        Catalogue(folder).sign(entry, keys)
    report(BuildProgress("catalogue", 1, 1, "steps", f"{name} {version}"))
    return BuiltImage(built.spec, built.key, built.folder, built.record, built.cached, entry,
                      built.seconds)


def os_build_manifest(record: dict[str, Any]) -> dict[str, Any]:
    """What the image manifest says of the build (read by `diff_builds`)."""
    return {key: record[key] for key in (
        "key", "profile", "profile_version", "suite", "spec_sha256", "source_date_epoch",
        "root_tar_sha256", "kernel", "packages")}


class _MmdebstrapProgress:
    """mmdebstrap's verbose output -> packages downloaded, then set up."""

    def __init__(self, total: int, report: ProgressFn, *, step: str = "mmdebstrap",
                 download: str | None = "download") -> None:
        self.total, self.report, self.step, self.download = total, report, step, download
        self.fetched = self.set_up = 0

    def __call__(self, line: str) -> None:
        if self.download is not None and line.startswith("Get:") and line.rstrip().endswith("B]") \
                and not any(word in line for word in ("Release", "Packages", "Translation")):
            self.fetched += 1
            self.report(BuildProgress(self.download, self.fetched, self.total, "packages",
                                      line.split(" ", 1)[-1][:80]))
        elif line.startswith("I: running --customize-hook") or line.startswith("I: creating"):
            self.report(BuildProgress(self.step, self.set_up, self.total, "packages",
                                      line.removeprefix("I: ")[:80]))
        elif line.startswith("Setting up "):
            self.set_up += 1
            self.report(BuildProgress(self.step, min(self.set_up, self.total), self.total,
                                      "packages", line.removeprefix("Setting up ")[:80]))


    def finished(self, installed: int) -> None:
        """The bars end full: apt may fetch and dpkg set up fewer packages than were
        resolved (one dpkg removed as empty), never leave a bar at 934/935."""
        if self.download is not None:
            self.report(BuildProgress(self.download, installed, installed, "packages", "ok"))
        self.report(BuildProgress(self.step, installed, installed, "packages", "ok"))


class _DiskProgress:
    def __init__(self, report: ProgressFn) -> None:
        self.report = report

    def __call__(self, step: str) -> None:
        done = DISK_STEPS.index(step) if step in DISK_STEPS else 0
        self.report(BuildProgress("disk", done, len(DISK_STEPS), "steps", step))


def prune(cache_dir: Path, profile: str, keep: set[str]) -> list[Path]:
    """Remove the cached builds of `profile` whose key is not in `keep` (their
    images stay in the catalogue); return the folders removed."""
    removed = []
    for record in sorted(cache_dir.glob("*/build.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("profile") == profile and data.get("key") not in keep:
            shutil.rmtree(record.parent, ignore_errors=True)
            removed.append(record.parent)
    return removed


def rebuild_root(built: BuiltImage, work: Path, *,
                 progress: ProgressFn | None = None) -> rootfs.RootFs:
    """The root tar made again from the build's own local repository (no network):
    its sha256 must be the build's `root_tar_sha256`. Progress as step "rebuild"."""
    on_line = None if progress is None else _MmdebstrapProgress(
        len(built.packages), progress, step="rebuild", download=None)
    root = rootfs.build_rootfs(built.spec, work, origin=rootfs.Origin(local_repo=built.repo),
                               on_line=on_line)
    if on_line is not None:
        on_line.finished(len(root.packages))
    return root
