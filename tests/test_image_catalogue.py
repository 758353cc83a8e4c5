"""The local image catalogue: list, latest version, verify (files, bmap,
signature, full content), corrupted files caught, add, remove, and the
`imager image list|show|verify|rm` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clirun import imager
from test_bmap import BS, sample_raw, sparse

from imager.certify.keys import station_keys
from imager.certify.signing import Trust
from imager.errors import NotFound, UsageError
from imager.imaging import compress
from imager.imaging.catalogue import Catalogue, file_sha256, images_dir, trust_for, version_key
from imager.imaging.create import create, manifest_bytes
from imager.settings import Settings


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return sample_raw(tmp_path / "sample.raw")


@pytest.fixture
def catalogue(settings: Settings) -> Catalogue:
    return Catalogue.of(settings)


def make(catalogue: Catalogue, raw: Path, name: str = "bureau", version: str = "1",
         **kw: object) -> None:
    create(raw, catalogue.root, name=name, version=version, level=1, **kw)  # type: ignore[arg-type]


def fails(report) -> list[str]:  # noqa: ANN001
    return [text for status, text in report.lines if status == "fail"]


def test_list_and_latest_in_natural_version_order(catalogue: Catalogue, raw: Path) -> None:
    for version in ("2026.9", "2026.10", "2025.12"):
        make(catalogue, raw, version=version)
    make(catalogue, raw, name="atelier", version="1")
    assert [(e.name, e.version) for e in catalogue.list()] == [
        ("atelier", "1"), ("bureau", "2025.12"), ("bureau", "2026.9"), ("bureau", "2026.10")]
    assert catalogue.get("bureau").version == "2026.10"
    assert catalogue.get("bureau", "2026.9").version == "2026.9"
    assert version_key("1.10") > version_key("1.9") > version_key("1.0-rc1")


def test_unknown_image_names_the_catalogue(catalogue: Catalogue, raw: Path) -> None:
    with pytest.raises(NotFound, match=re.escape(str(catalogue.root)) + ".*imager image list"):
        catalogue.get("nothing")
    make(catalogue, raw)
    with pytest.raises(NotFound, match="no version '7' .*it has 1"):
        catalogue.get("bureau", "7")


def test_entry_gives_the_deployment_what_it_needs(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw)
    entry = catalogue.get("bureau")
    assert entry.image == catalogue.root / "bureau-1.img.zst"
    assert entry.bmap_path == catalogue.root / "bureau-1.bmap"
    assert entry.compression == "zstd" and not entry.signed
    assert entry.read_bmap().image_size == raw.stat().st_size


def test_verify_intact_image(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw)
    entry = catalogue.get("bureau")
    report = catalogue.verify(entry)
    assert report.ok
    assert [s for s, _ in report.lines] == ["ok", "ok", "warn"]     # not signed: a warning
    seen: list[int] = []
    full = catalogue.verify(entry, full=True, progress=lambda d, t: seen.append(d))
    assert full.ok and "4 plages vérifiées" in full.lines[-1][1]
    assert seen[-1] == raw.stat().st_size
    assert not catalogue.verify(entry, require_signature=True).ok


def test_corrupted_compressed_file_is_detected(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw)
    entry = catalogue.get("bureau")
    data = bytearray(entry.image.read_bytes())
    data[len(data) // 2] ^= 0x01
    entry.image.write_bytes(bytes(data))
    report = catalogue.verify(entry, full=True)
    assert not report.ok
    assert any("sha256 mismatch" in f and "corrupted" in f for f in fails(report))
    entry.image.write_bytes(bytes(data[:-10]))
    assert any("truncated" in f for f in fails(catalogue.verify(entry)))
    entry.image.unlink()
    assert any("missing file" in f for f in fails(catalogue.verify(entry)))


def _swap_content(catalogue: Catalogue, entry, data: bytes) -> None:  # noqa: ANN001
    """Replace the compressed image and make the manifest agree (so only the
    full check can tell)."""
    entry.image.write_bytes(data)
    manifest = dict(entry.manifest, image=dict(entry.manifest["image"], size=len(data),
                                               sha256=file_sha256(entry.image)))
    entry.files.manifest.write_bytes(manifest_bytes(manifest))


def test_full_verify_checks_every_range(catalogue: Catalogue, raw: Path, tmp_path: Path) -> None:
    make(catalogue, raw)
    other = bytearray(raw.read_bytes())
    other[10 * BS + 5] ^= 0xFF                        # block 10: one bit pattern changed
    (tmp_path / "other.raw").write_bytes(bytes(other))
    compress.compress_file(tmp_path / "other.raw", tmp_path / "other.zst")
    _swap_content(catalogue, catalogue.get("bureau"), (tmp_path / "other.zst").read_bytes())
    entry = catalogue.get("bureau")
    assert catalogue.verify(entry).ok                 # files agree with the manifest
    report = catalogue.verify(entry, full=True)
    assert fails(report) == ["1 plage(s) corrompue(s) / corrupted range(s), blocks 10-10: "
                             "the image is damaged; make it again"]


def test_full_verify_checks_the_size(catalogue: Catalogue, raw: Path, tmp_path: Path) -> None:
    make(catalogue, raw)
    longer = sparse(tmp_path / "longer.raw", raw.stat().st_size + BS, [])
    longer.write_bytes(raw.read_bytes() + bytes(BS))
    compress.compress_file(longer, tmp_path / "longer.zst")
    _swap_content(catalogue, catalogue.get("bureau"), (tmp_path / "longer.zst").read_bytes())
    assert "the bmap says" in fails(catalogue.verify(catalogue.get("bureau"), full=True))[0]
    cut = sparse(tmp_path / "cut.raw", 150 * BS, [(0, raw.read_bytes()[:150 * BS])])
    compress.compress_file(cut, tmp_path / "cut.zst")
    _swap_content(catalogue, catalogue.get("bureau"), (tmp_path / "cut.zst").read_bytes())
    assert "truncated" in fails(catalogue.verify(catalogue.get("bureau"), full=True))[0]


def test_altered_bmap_is_detected(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw)
    entry = catalogue.get("bureau")
    entry.bmap_path.write_text(entry.bmap_path.read_text().replace("> 10 <", "> 11 <"))
    problems = fails(catalogue.verify(entry))
    assert any("the bmap was altered" in p for p in problems)
    assert any("altered or damaged" in p for p in problems)


def test_signed_manifest(catalogue: Catalogue, raw: Path, settings: Settings,
                         tmp_path: Path) -> None:
    keys = station_keys(settings)
    make(catalogue, raw, keys=keys)
    entry = catalogue.get("bureau")
    trust = trust_for(settings)
    assert entry.signed and trust is not None
    report = catalogue.verify(entry, trust=trust, require_signature=True)
    assert report.ok and "manifest signed" in report.lines[-1][1]
    # another station's certificate is not trusted
    stranger = station_keys(Settings(data_dir=tmp_path / "stranger"))
    assert any("neither the trusted certificate" in f
               for f in fails(catalogue.verify(entry, trust=Trust([stranger.station_cert]))))
    # the readable manifest changed after signing
    entry.files.manifest.write_bytes(manifest_bytes(dict(entry.manifest, profile="jeux")))
    assert any("differs" in f for f in fails(catalogue.verify(catalogue.get("bureau"),
                                                              trust=trust)))


def test_sign_later(catalogue: Catalogue, raw: Path, settings: Settings) -> None:
    make(catalogue, raw)
    assert trust_for(settings) is None                # no key yet: nothing created
    assert not (settings.data_dir / "keys").exists()
    catalogue.sign(catalogue.get("bureau"), station_keys(settings))
    assert catalogue.verify(catalogue.get("bureau"), trust=trust_for(settings),
                            require_signature=True).ok


def test_remove(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw, version="1")
    make(catalogue, raw, version="2")
    removed = catalogue.remove("bureau", "1")
    assert removed.version == "1"
    assert sorted(p.name for p in catalogue.root.iterdir()) == [
        "bureau-2.bmap", "bureau-2.img.zst", "bureau-2.manifest.json"]
    with pytest.raises(NotFound):
        catalogue.remove("bureau", "1")


def test_add_an_image_made_elsewhere(catalogue: Catalogue, raw: Path, tmp_path: Path) -> None:
    built = create(raw, tmp_path / "elsewhere", name="bureau", version="3", level=1)
    entry = catalogue.add(built.files.manifest)
    assert entry.files.folder == catalogue.root and catalogue.verify(entry, full=True).ok
    with pytest.raises(UsageError, match="already has bureau 3"):
        catalogue.add(built.files.manifest)
    other = create(raw, tmp_path / "elsewhere", name="bureau", version="4", level=1)
    other.files.image.write_bytes(other.files.image.read_bytes()[:-1])
    with pytest.raises(UsageError, match="not added: .*truncated"):
        catalogue.add(other.files.manifest)
    assert [e.version for e in catalogue.list()] == ["3"]


def test_unreadable_manifest_does_not_hide_the_others(catalogue: Catalogue, raw: Path) -> None:
    make(catalogue, raw)
    (catalogue.root / "broken-1.manifest.json").write_text("{not json")
    doc = json.loads((catalogue.root / "bureau-1.manifest.json").read_text())
    del doc["image"]["sha256"]
    (catalogue.root / "partial-1.manifest.json").write_text(json.dumps(doc))
    entries, problems = catalogue.scan()
    assert [e.name for e in entries] == ["bureau"]
    assert len(problems) == 2 and any("image.sha256" in p for p in problems)


# --- the commands ------------------------------------------------------------

def test_cli_list_show_verify_rm(tmp_path: Path, raw: Path) -> None:
    data = tmp_path / "data"
    out = imager(data, "image", "list")
    assert "Aucune image" in out.stdout and str(images_dir(Settings(data_dir=data))) in out.stdout
    imager(data, "image", "create", str(raw), "--name", "bureau", "--version", "1",
           "--profile", "bureau-fr")
    listing = json.loads(imager(data, "image", "list", "--json").stdout)
    assert [(i["name"], i["version"], i["signed"]) for i in listing] == [("bureau", "1", False)]
    assert "bureau" in imager(data, "image", "list").stdout
    show = imager(data, "image", "show", "bureau").stdout
    assert "Image bureau 1 — profil / profile bureau-fr" in show and "sha256" in show
    out = imager(data, "image", "verify", "bureau", "--full")
    assert "Image intacte / image intact" in out.stdout
    assert "manifest not signed" in out.stdout
    image = data / "images" / "bureau-1.img.zst"
    image.write_bytes(image.read_bytes()[:100] + b"X" + image.read_bytes()[101:])
    bad = imager(data, "image", "verify", "bureau", check=False)
    assert bad.returncode == 1 and "NOT intact" in bad.stdout and "sha256 mismatch" in bad.stdout
    missing = imager(data, "image", "show", "ecole", check=False)
    assert missing.returncode == 2 and "imager image list" in missing.stderr
    assert "images" in missing.stderr
    out = imager(data, "image", "rm", "bureau", "1")
    assert "Image supprimée / image removed: bureau 1" in out.stdout
    assert json.loads(imager(data, "image", "list", "--json").stdout) == []


def test_cli_sign_and_verify_with_trust(tmp_path: Path, raw: Path) -> None:
    data = tmp_path / "data"
    imager(data, "image", "create", str(raw), "--name", "bureau", "--version", "1")
    refused = imager(data, "image", "sign", "bureau", "1", check=False)
    assert refused.returncode == 2 and "imager keys show" in refused.stderr
    imager(data, "keys", "show")
    imager(data, "image", "sign", "bureau", "1")
    imager(data, "keys", "export", str(tmp_path / "station.pem"))
    other = tmp_path / "other"
    imager(other, "image", "add", str(data / "images" / "bureau-1.manifest.json"))
    out = imager(other, "image", "verify", "bureau", "--require-signature", check=False)
    assert out.returncode == 1 and "signature not checked" in out.stdout
    out = imager(other, "image", "verify", "bureau", "--require-signature",
                 "--trust", str(tmp_path / "station.pem"))
    assert "manifest signed" in out.stdout and "Image intacte" in out.stdout

