"""The station's local image store: <data dir>/images/, one flat folder.

Each image is the files `create` makes (<name>-<version>.img.zst, .bmap,
.manifest.json and, when the station could sign it, .manifest.signed.json).
The manifests are the index: nothing else is kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imager.certify.keys import StationKeys, keys_dir, load_cert, station_keys
from imager.certify.signing import (
    Checks,
    Trust,
    VerificationFailed,
    read_envelope,
    verify_envelope,
)
from imager.errors import ImagerError, NotFound, UsageError
from imager.host.files import atomic_file, private_dir
from imager.imaging import bmap as bmaplib
from imager.imaging import compress
from imager.imaging.create import FORMAT, Files, write_manifest
from imager.settings import Settings

Progress = Callable[[int, int], None]
_HASH_CHUNK = 8 << 20
# manifest field -> type; dotted names are inside "image" / "bmap"
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str, "name": str, "version": str, "profile": (str, type(None)),
    "image_size": int, "mapped_bytes": int, "block_size": int, "built": str,
    "image.file": str, "image.compression": str, "image.size": int, "image.sha256": str,
    "bmap.file": str, "bmap.sha256": str,
}


def images_dir(settings: Settings) -> Path:
    """Where the catalogue lives: <data dir>/images."""
    return settings.data_dir / "images"


def existing_keys(settings: Settings) -> StationKeys | None:
    """The station keys if this station already has a signing key, else None
    (never creates one: that is `imager keys show` or the first certificate)."""
    if not (keys_dir(settings) / "station.key").exists():
        return None
    return station_keys(settings)


def trust_for(settings: Settings, trust_file: Path | None = None) -> Trust | None:
    """Who may sign manifests: the certificates in `trust_file`, else this
    station's own certificate, else nobody (None)."""
    if trust_file is not None:
        return Trust(load_cert(trust_file))
    keys = existing_keys(settings)
    return Trust([keys.station_cert]) if keys is not None else None


@dataclass(frozen=True)
class Entry:
    """One image of the catalogue and its manifest."""

    files: Files
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def image(self) -> Path:
        """The compressed raw image."""
        return self.files.image

    @property
    def compression(self) -> str:
        return str(self.manifest["image"]["compression"])

    @property
    def bmap_path(self) -> Path:
        return self.files.bmap

    @property
    def signed(self) -> bool:
        return self.files.signed.exists()

    def read_bmap(self) -> bmaplib.Bmap:
        """The parsed and checked bmap of this image."""
        return bmaplib.read(self.files.bmap)


@dataclass
class Report:
    """What a verification checked: (status, text) with status ok, warn or fail."""

    entry: Entry
    lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(status != "fail" for status, _ in self.lines)

    def add(self, status: str, text: str) -> None:
        self.lines.append((status, text))


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Natural order of versions: numbers compare as numbers (2026.10 after 2026.9)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", version) if part)


def load_manifest(path: Path) -> dict[str, Any]:
    """A manifest file, checked field by field (UsageError names the field)."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the manifest {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise UsageError(f"the manifest {path} is not JSON ({exc}): make the image again "
                         "with `imager image create`") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{path} is not an image manifest (format {FORMAT} expected)")
    for dotted, kind in _FIELDS.items():
        value: Any = data
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UsageError(f"{path}: the field {dotted} is missing or of the wrong type: make "
                             "the image again with `imager image create`")
    return data


class Catalogue:
    """The images in one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of(cls, settings: Settings) -> Catalogue:
        return cls(images_dir(settings))

    def _entry(self, manifest_path: Path) -> Entry:
        manifest = load_manifest(manifest_path)
        files = Files(manifest_path.parent, manifest_path.name.removesuffix(".manifest.json"))
        expected = Files.of(files.folder, manifest["name"], manifest["version"])
        if (files.stem, files.image.name, files.bmap.name) != \
                (expected.stem, manifest["image"]["file"], manifest["bmap"]["file"]):
            raise UsageError(f"{manifest_path}: the files must be named {expected.stem}.img.zst "
                             f"and {expected.stem}.bmap after the manifest's name and version")
        return Entry(files, manifest)

    def scan(self) -> tuple[list[Entry], list[str]]:
        """Every image (by name, then version), and the problems of unreadable manifests."""
        entries, problems = [], []
        for path in sorted(self.root.glob("*.manifest.json")):
            try:
                entries.append(self._entry(path))
            except ImagerError as exc:
                problems.append(str(exc))
        entries.sort(key=lambda e: (e.name, version_key(e.version), e.manifest["built"]))
        return entries, problems

    def list(self) -> list[Entry]:
        """Every readable image, by name then version."""
        return self.scan()[0]

    def get(self, name: str, version: str | None = None) -> Entry:
        """The image `name` at `version`, or its latest version."""
        same = [e for e in self.list() if e.name == name]
        if not same:
            raise NotFound(f"aucune image « {name} » / no image named {name!r} in the "
                           f"catalogue {self.root}: see `imager image list`")
        if version is None:
            return same[-1]
        for entry in same:
            if entry.version == version:
                return entry
        raise NotFound(f"pas de version « {version} » de « {name} » / the image {name!r} has "
                       f"no version {version!r} in {self.root} (it has "
                       f"{', '.join(e.version for e in same)}): see `imager image list`")

    def add(self, manifest_path: Path) -> Entry:
        """Copy an image made elsewhere (its manifest and the files beside it) into
        the catalogue, after checking their sizes and sha256."""
        entry = self._entry(manifest_path)
        report = Report(entry)
        _check_files(entry, report)
        if not report.ok:
            problems = "; ".join(text for status, text in report.lines if status == "fail")
            raise UsageError(f"image non ajoutée / not added: {problems}")
        target = Files(self.root, entry.files.stem)
        if target.manifest.exists():
            raise UsageError(f"déjà au catalogue / the catalogue {self.root} already has "
                             f"{entry.name} "
                             f"{entry.version}: remove it first (`imager image rm "
                             f"{entry.name} {entry.version}`) or give it another version")
        private_dir(self.root)
        for src, dst in zip(entry.files.all(), target.all(), strict=True):
            if src.exists():   # the manifest last: a half-copied image is not listed
                _copy(src, dst)
        return self._entry(target.manifest)

    def remove(self, name: str, version: str) -> Entry:
        """Delete every file of one image."""
        entry = self.get(name, version)
        entry.files.manifest.unlink()   # first: the image leaves the listing at once
        for path in entry.files.all():
            path.unlink(missing_ok=True)
        return entry

    def sign(self, entry: Entry, keys: StationKeys) -> None:
        """Sign (again) the manifest of an image with the station key."""
        write_manifest(entry.files, entry.manifest, keys)

    def verify(self, entry: Entry, *, full: bool = False, trust: Trust | None = None,
               require_signature: bool = False, progress: Progress | None = None) -> Report:
        """Check the compressed file's size and sha256, the bmap (its sha256, its own
        checksum, its sizes), the signature and, with `full`, decompress the whole
        image and check every range's checksum and the image size."""
        report = Report(entry)
        _check_files(entry, report)
        bmap = _check_bmap(entry, report)
        _check_signature(entry, report, trust, require_signature)
        if full and bmap is not None and report.ok:
            _check_content(entry, bmap, report, progress)
        return report


def _copy(src: Path, dst: Path) -> None:
    with atomic_file(dst, "copy") as out, open(src, "rb") as fh:
        shutil.copyfileobj(fh, out, _HASH_CHUNK)


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a whole file."""
    with open(path, "rb", buffering=0) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _check_files(entry: Entry, report: Report) -> None:
    """The compressed file and the bmap file are there, with the manifest's sha256."""
    expected = entry.manifest["image"]
    path = entry.image
    if not path.exists():
        report.add("fail", f"fichier absent / missing file {path}: remove the image "
                           f"(`imager image rm {entry.name} {entry.version}`) and create it again")
        return
    size = path.stat().st_size
    if size != expected["size"]:
        report.add("fail", f"{path.name}: {size} octets / bytes, le manifeste dit / the "
                           f"manifest says {expected['size']}: the file is truncated or was "
                           "replaced; copy it again from its source")
    elif file_sha256(path) != expected["sha256"]:
        report.add("fail", f"{path.name}: sha256 différent / sha256 mismatch (manifest "
                           f"{expected['sha256']}): the compressed image is corrupted; copy "
                           "it again from its source")
    else:
        report.add("ok", f"{path.name}: {size} octets / bytes, sha256 {expected['sha256']}")
    kind = compress.detect(path)
    if kind != expected["compression"]:
        report.add("fail", f"{path.name}: compression {kind}, the manifest says "
                           f"{expected['compression']}")
    bmap_path = entry.bmap_path
    if not bmap_path.exists():
        report.add("fail", f"fichier absent / missing file {bmap_path}")
    elif file_sha256(bmap_path) != entry.manifest["bmap"]["sha256"]:
        report.add("fail", f"{bmap_path.name}: sha256 différent / sha256 mismatch (manifest "
                           f"{entry.manifest['bmap']['sha256']}): the bmap was altered")


def _check_bmap(entry: Entry, report: Report) -> bmaplib.Bmap | None:
    if not entry.bmap_path.exists():
        return None
    try:
        bmap = entry.read_bmap()
    except bmaplib.BmapError as exc:
        report.add("fail", str(exc))
        return None
    stated = (entry.manifest["image_size"], entry.manifest["block_size"],
              entry.manifest["mapped_bytes"])
    if (bmap.image_size, bmap.block_size, bmap.mapped_bytes) != stated:
        report.add("fail", f"{entry.bmap_path.name}: image {bmap.image_size} bytes, blocks of "
                           f"{bmap.block_size}, {bmap.mapped_bytes} mapped bytes; the manifest "
                           f"says {stated[0]}, {stated[1]}, {stated[2]}")
        return None
    report.add("ok", f"{entry.bmap_path.name}: bmap {bmap.version}, {len(bmap.ranges)} "
                     f"plages / ranges, {bmaplib.human_size(bmap.mapped_bytes)} "
                     "utiles / mapped, somme de contrôle du fichier / file checksum ok")
    return bmap


def _check_signature(entry: Entry, report: Report, trust: Trust | None,
                     required: bool) -> None:
    missing = "fail" if required else "warn"
    if not entry.signed:
        report.add(missing, "manifeste non signé / manifest not signed: sign it with "
                            f"`imager image sign {entry.name} {entry.version}`")
        return
    if trust is None:
        report.add(missing, "signature non vérifiable / signature not checked: this station "
                            "has no key; give the signer's certificate with --trust station.pem")
        return
    checks = Checks()
    try:
        envelope = read_envelope(entry.files.signed.read_bytes(), checks)
        document = verify_envelope(envelope, trust, checks)
    except VerificationFailed as exc:
        report.add("fail", f"{entry.files.signed.name}: {exc}")
        return
    if document != entry.manifest:
        report.add("fail", f"{entry.files.signed.name}: the signed manifest differs from "
                           f"{entry.files.manifest.name}: one of them was changed")
        return
    signer = next((text for ok, text in checks.lines if text.startswith("signataire")), "")
    report.add("ok", f"manifeste signé / manifest signed: {signer}")


def _check_content(entry: Entry, bmap: bmaplib.Bmap, report: Report,
                   progress: Progress | None) -> None:
    """Decompress everything: every range's checksum, then the exact image size."""
    bad: list[str] = []
    hasher, current = bmap.hasher(), None
    try:
        with open(entry.image, "rb") as fh, compress.open_stream(fh, entry.compression) as raw:
            for rng, offset, data in bmaplib.mapped_chunks(raw, bmap):
                if rng is not current:
                    hasher, current = bmap.hasher(), rng
                hasher.update(data)
                if offset + len(data) == min((rng.last + 1) * bmap.block_size, bmap.image_size):
                    if hasher.hexdigest() != rng.sha256:
                        bad.append(f"{rng.first}-{rng.last}")
                if progress is not None:
                    progress(offset + len(data), bmap.image_size)
            size = _drain(raw, bmap)
    except ImagerError as exc:
        report.add("fail", f"décompression / decompression: {exc}")
        return
    if bad:
        report.add("fail", f"{len(bad)} plage(s) corrompue(s) / corrupted range(s), blocks "
                           f"{', '.join(bad[:10])}: the image is damaged; make it again")
    elif size != bmap.image_size:
        report.add("fail", f"l'image décompressée fait / the decompressed image is {size} bytes, "
                           f"the bmap says {bmap.image_size}")
    else:
        report.add("ok", f"contenu / content: {len(bmap.ranges)} plages vérifiées / ranges "
                         f"verified, {bmap.image_size} octets / bytes")


def _drain(raw: compress.Stream, bmap: bmaplib.Bmap) -> int:
    """The full decompressed size: drop what follows the last range (frames of
    zeros are not even decoded)."""
    size = max((offset + length for offset, length, _ in bmap.byte_ranges()), default=0)
    return size + raw.skip(1 << 62)
