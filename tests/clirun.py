"""Run the real `imager` command in a subprocess against a test data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "IMAGER_DATA_DIR": str(data_dir), "COLUMNS": "200", **extra}


def imager(data_dir: Path, *args: str, check: bool = True, **extra: str,
           ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "imager", *args], capture_output=True,
                          text=True, env=env_for(data_dir, **extra), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"imager {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def spawn(data_dir: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "imager", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env_for(data_dir, **extra))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def jobs(data_dir: Path) -> list[dict[str, Any]]:
    return json.loads(imager(data_dir, "jobs", "list", "--json").stdout)


def job(data_dir: Path, job_id: int) -> dict[str, Any]:
    return json.loads(imager(data_dir, "jobs", "show", str(job_id), "--json").stdout)
