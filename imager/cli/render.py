"""How the CLI shows results and long jobs: consoles and tables that never cut a
message short, rich progress bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from imager.errors import ImagerError
from imager.model import ErasePlan, EraseReport
from imager.registry.lifecycle import STATE_LABELS_FR

JSON_PROGRESS_SECONDS = 1.0
# Width of the output when it is not a terminal and COLUMNS is not set (rich would
# take 80): a piped table keeps a message on few lines, easy to grep.
PIPE_WIDTH = 160


def console(*, stderr: bool = False, **options: Any) -> Console:
    """A rich Console on stdout (or stderr): the terminal's width, COLUMNS when it is
    set, else PIPE_WIDTH columns."""
    stream = sys.stderr if stderr else sys.stdout
    columns_set = os.environ.get("COLUMNS", "").isdigit()
    width = None if columns_set or stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, width=width, **options)


def new_table(title: str | None, columns: Sequence[str]) -> Table:
    """A table whose cells wrap, breaking a word longer than its column, instead of
    ending with "…": a message is never cut short, whatever the width. Fill it with
    :func:`add_row`."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def add_row(table: Table, *cells: str | Text) -> None:
    """A row whose strings are shown as written: never read as rich markup, which
    would drop a "[...]" of a message or fail on "[/dev/sda]". Colour a cell by
    giving a Text."""
    table.add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in cells))


def step_label(plan: ErasePlan, index: int) -> str:
    """'passe 2/3 ones' / 'étape 1/2 nvme-format-user-data' for step `index`."""
    from imager.erase.engines import ENGINES  # every engine: only for commands that erase
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


class StepBars:
    """Rich bars, one per step of a long job, shown as its progress callback is called
    (a subclass turns its events into `show`); `shown` lets it throttle redraws."""

    def __init__(self, out: Console, *columns: ProgressColumn) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), *columns,
                                 console=out)
        self.tasks: dict[str, TaskID] = {}
        self.shown = 0.0

    def __enter__(self) -> Self:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def show(self, step: str, label: str, *, done: float, total: float | None,
             **fields: Any) -> None:
        """Step `step`'s bar (made the first time, labelled `label`) at `done` of `total`."""
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(label, total=total, **fields)
        self.progress.update(self.tasks[step], completed=done, total=total, **fields)


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
    table = new_table("Résultat / Result", (
        "N°", "Disque / Drive", "Résultat / Outcome", "Méthode / Method", "Débit / Speed",
        "Vérification", "Motif / Reason"))
    for jid, res in results.items():
        if isinstance(res, ImagerError):
            add_row(table, str(jid), devices[jid], Text("échec / failed", style="red"), "", "",
                    "", str(res))
            continue
        v = res.verification
        colour = "green" if res.outcome == "erased" else "red"
        add_row(
            table, str(jid), res.device.path,
            Text.assemble((STATE_LABELS_FR[res.outcome], colour), f" ({res.outcome})"),
            f"{res.plan.method}" + (f" ({res.achieved_class.capitalize()})"
                                    if res.achieved_class else ""),
            f"{res.throughput / 1e6:.0f} MB/s",
            f"{v.mode} {v.coverage:.1%}" if v else "—", res.reason)
    return table
