"""Who may receive an OS image, and what the registry keeps of a deployment."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from imager.erase.plan import plan_for
from imager.erase.policy import load
from imager.errors import UsageError
from imager.inventory.capabilities import DriveCapabilities
from imager.model import DriveIdentity
from imager.registry import deployments, items
from imager.registry.jobs import RegistryJobStore
from imager.store.db import Registry, utcnow
from imager.store.models import Deployment, Drive

IMAGE = deployments.ImageInfo(name="debian-fr", version="2026.11", sha256="ab" * 32,
                              image_size=4 << 30, mapped_bytes=1 << 30)
IDENT = DriveIdentity(path="/dev/sdz", size=64 << 30, serial="S3Z9NB0K123456", model="SSD 860")


def _erase(registry: Registry, final: str) -> int:
    store = RegistryJobStore(registry)
    plan = plan_for(DriveCapabilities(identity=IDENT, medium="unknown", transport="sata"),
                    load(None), method="nist-clear")
    job = store.create_erase(IDENT, plan)
    store.move(job, "running")
    store.move(job, final, reason="test")
    return job


def _result(ok: bool = True, **kw: Any) -> SimpleNamespace:
    base = {"ok": ok, "error": None if ok else "range 3 (offset 12288) read back wrong",
            "verify": "full", "verified_bytes": IMAGE.mapped_bytes if ok else 0,
            "mismatches": [] if ok else [(12288, 4096)], "written_bytes": IMAGE.mapped_bytes,
            "ranges": 12, "write_seconds": 3.0, "verify_seconds": 1.5}
    return SimpleNamespace(**{**base, **kw})


def _deploy(registry: Registry, result: SimpleNamespace, *, allow: bool = False,
            after: dict[str, Any] | None = None) -> tuple[Drive, Deployment]:
    with registry.session() as s:
        drive_id, erasure = deployments.begin(s, IDENT, IMAGE, actor="Lina",
                                              allow_unerased=allow)
        assert s.get(Drive, drive_id).state in ("imaging", "inventoried", "erase_failed")
        dep = deployments.finish(s, drive_id, IMAGE, result, actor="Lina",
                                 started_at=utcnow(), erasure_job_id=erasure, after=after,
                                 hostname="pc-rs05-0042")
        drive = s.get(Drive, drive_id)
        s.flush()
        s.expunge_all()
        return drive, dep


def test_an_erased_drive_is_imaged_and_the_deployment_recorded(registry: Registry) -> None:
    job = _erase(registry, "erased")
    drive, dep = _deploy(registry, _result())
    assert drive.state == "imaged"
    assert (dep.ok, dep.erasure_job_id, dep.verify, dep.hostname) == (
        True, job, "full", "pc-rs05-0042")
    with registry.session(readonly=True) as s:
        moves = [(e.from_state, e.to_state) for e in items.history(s, s.get(Drive, drive.id))
                 if e.kind == "move"]
    assert moves[-2:] == [("erased", "imaging"), ("imaging", "imaged")]


def test_a_failed_read_back_leaves_the_drive_image_failed_with_a_next_step(
        registry: Registry) -> None:
    _erase(registry, "erased")
    drive, dep = _deploy(registry, _result(ok=False))
    assert drive.state == "image_failed" and not dep.ok
    assert dep.detail["mismatches"] == [[12288, 4096]]
    with registry.session(readonly=True) as s:
        last = items.history(s, s.get(Drive, drive.id))[-1]
    assert "read back wrong" in last.reason and "relancer" in last.data["next_step"]["fr"]


def test_a_failed_after_step_fails_the_deployment(registry: Registry) -> None:
    _erase(registry, "erased")
    drive, dep = _deploy(registry, _result(), after={"error": "resize2fs failed"})
    assert drive.state == "image_failed" and not dep.ok
    assert dep.error == "after deployment: resize2fs failed"


@pytest.mark.parametrize("final", ["failed", "unverified"])
def test_a_drive_without_a_verified_erasure_is_refused(registry: Registry, final: str) -> None:
    _erase(registry, final)
    with pytest.raises(UsageError, match="without a successful, verified erasure"):
        _deploy(registry, _result())
    with registry.session(readonly=True) as s:
        assert not s.query(Deployment).count()
        assert s.query(Drive).one().state == "erase_failed"


def test_an_unknown_drive_is_refused_unless_lab_use(registry: Registry) -> None:
    with pytest.raises(UsageError, match="has no erasure on record"):
        _deploy(registry, _result())
    drive, dep = _deploy(registry, _result(), allow=True)
    assert dep.ok and dep.erasure_job_id is None
    assert drive.state == "inventoried"          # no erasure: it never was "erased"
    with registry.session(readonly=True) as s:
        kinds = [e.kind for e in items.history(s, s.get(Drive, drive.id))]
    assert "imaging_unerased" in kinds and kinds[-1] == "imaged"
