"""Run several erase jobs at once, one thread per drive.

SIGINT/SIGTERM set one stop event: every job stops at its next safe point and
ends `interrupted` (resumable), never `erased`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from imager.errors import ImagerError
from imager.jobs.erase import ProgressCallback, run_erase
from imager.jobs.store import JobStore
from imager.model import EraseReport
from imager.settings import Settings


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into `stop.set()` for the duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_all(store: JobStore, job_ids: list[int], settings: Settings, *,
            on_progress: ProgressCallback | None = None, allow_files: bool = False,
            paths: dict[int, str] | None = None,
            stop: threading.Event | None = None) -> dict[int, EraseReport | ImagerError]:
    """Run the jobs in parallel; return each job's report or the error that stopped it."""
    stop = stop or threading.Event()
    paths = paths or {}
    job_ids = list(dict.fromkeys(job_ids))  # each job once
    results: dict[int, EraseReport | ImagerError] = {}
    with stop_on_signals(stop), ThreadPoolExecutor(max_workers=max(1, len(job_ids)),
                                                    thread_name_prefix="job") as pool:
        futures = {jid: pool.submit(run_erase, store, jid, settings, stop=stop,
                                    on_progress=on_progress, allow_files=allow_files,
                                    device_path=paths.get(jid)) for jid in job_ids}
        for jid, fut in futures.items():
            try:
                results[jid] = fut.result()
            except ImagerError as exc:
                results[jid] = exc
            except Exception as exc:  # a bug in one job must not lose the others' reports
                results[jid] = ImagerError(f"internal error ({type(exc).__name__}: {exc})")
    return results
