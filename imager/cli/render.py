"""How the CLI shows long jobs: rich progress bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from imager.erase.engines import ENGINES
from imager.errors import ImagerError
from imager.model import ErasePlan, EraseReport
from imager.registry.lifecycle import STATE_LABELS_FR

JSON_PROGRESS_SECONDS = 1.0


def step_label(plan: ErasePlan, index: int) -> str:
    """'passe 2/3 ones' / 'étape 1/2 nvme-format-user-data' for step `index`."""
    engine = ENGINES[plan.engine].for_plan(plan)
    count = engine.steps(plan)
    word = "passe" if plan.engine == "overwrite" else "étape"
    if index >= count:  # the drive refused the method and the plan moved on
        return f"{word} {index + 1}"
    return f"{word} {index + 1}/{count} {engine.describe_step(plan, index)}"


def phase_label(plan: ErasePlan, phase: str, index: int) -> str:
    if phase == "verify":
        return f"vérification {plan.verify}"
    return step_label(plan, index)


class BarsUI:
    """One rich progress bar per job."""

    def __init__(self, console: Console, jobs: dict[int, tuple[str, ErasePlan]]) -> None:
        self.jobs = jobs
        self.progress = Progress(
            TextColumn("[bold]{task.fields[device]}"), TextColumn("{task.description}"),
            BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(),
            TimeRemainingColumn(), console=console)
        self.tasks: dict[tuple[int, str, int], TaskID] = {}

    def __enter__(self) -> BarsUI:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, job_id: int, phase: str, index: int, done: int, total: int) -> None:
        key = (job_id, phase, index)
        if key not in self.tasks:
            device, plan = self.jobs[job_id]
            self.tasks[key] = self.progress.add_task(
                phase_label(plan, phase, index), total=total, device=device)
        self.progress.update(self.tasks[key], completed=done, total=total)


class JsonLinesUI:
    """A JSON line per job every second, and one per report."""

    def __init__(self, jobs: dict[int, tuple[str, ErasePlan]]) -> None:
        self.jobs = jobs
        self.lock = threading.Lock()
        self.last: dict[int, float] = {}

    def __enter__(self) -> JsonLinesUI:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def emit(self, obj: dict[str, Any]) -> None:
        with self.lock:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    def __call__(self, job_id: int, phase: str, index: int, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last.get(job_id, 0.0) < JSON_PROGRESS_SECONDS:
            return
        self.last[job_id] = now
        self.emit({"event": "progress", "job": job_id, "device": self.jobs[job_id][0],
                   "phase": phase, "pass": index + 1, "done": done, "total": total})


def report_table(results: dict[int, EraseReport | ImagerError],
                 devices: dict[int, str]) -> Table:
    table = Table(title="Résultat / Result")
    for col in ("N°", "Disque / Drive", "Résultat / Outcome", "Méthode / Method", "Débit / Speed",
                "Vérification", "Motif / Reason"):
        table.add_column(col)
    for jid, res in results.items():
        if isinstance(res, ImagerError):
            table.add_row(str(jid), devices[jid], "[red]échec / failed", "", "", "", str(res))
            continue
        v = res.verification
        colour = "green" if res.outcome == "erased" else "red"
        table.add_row(
            str(jid), res.device.path,
            f"[{colour}]{STATE_LABELS_FR[res.outcome]}[/] ({res.outcome})",
            f"{res.plan.method}" + (f" ({res.achieved_class.capitalize()})"
                                    if res.achieved_class else ""),
            f"{res.throughput / 1e6:.0f} MB/s",
            f"{v.mode} {v.coverage:.1%}" if v else "—", res.reason)
    return table
