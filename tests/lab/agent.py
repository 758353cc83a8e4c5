"""Lab guest agent: runs the host's shell commands and answers over a virtio-serial port.

Copied by the host into the guest's "lab" share at every boot and started by the
guest's /init. Python standard library only. Protocol: one JSON object per line
each way. The agent first sends {"event": "ready", ...}; then each request
{"id": N, "op": "run", "cmd": "...", "timeout": S, "env": {...}} gets
{"id": N, "rc": ..., "stdout": base64, "stderr": base64, "seconds": ...,
"timed_out": bool}; {"id": N, "op": "poweroff"} is acknowledged and ends the agent.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, BinaryIO

PORT_NAME = "imager.lab"


def find_port() -> Path:
    """The character device of the virtio-serial port the host named PORT_NAME."""
    for _ in range(100):
        for entry in Path("/sys/class/virtio-ports").glob("*"):
            if (entry / "name").read_text().strip() == PORT_NAME:
                return Path("/dev") / entry.name
        time.sleep(0.1)
    raise SystemExit(f"agent: no virtio-serial port named {PORT_NAME}")


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Run one shell command in its own process group, killed whole on timeout."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", **request.get("env", {})}
    start = time.monotonic()
    timed_out = False
    with subprocess.Popen(request["cmd"], shell=True, executable="/bin/bash", env=env,
                          cwd=request.get("cwd") or "/", stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=request.get("timeout", 60))
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    return {
        "id": request.get("id"), "rc": proc.returncode, "timed_out": timed_out,
        "seconds": round(time.monotonic() - start, 3),
        "stdout": base64.b64encode(out).decode(), "stderr": base64.b64encode(err).decode(),
    }


def send(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def serve(fd: int, reader: BinaryIO) -> None:
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    send(fd, {"event": "ready", "kernel": platform.release(), "uptime": uptime})
    for line in reader:
        request = json.loads(line)
        if request.get("op") == "poweroff":
            send(fd, {"id": request.get("id"), "rc": 0})
            return
        try:
            send(fd, run(request))
        except Exception as exc:  # the host must get an answer, whatever failed
            send(fd, {"id": request.get("id"), "error": f"{type(exc).__name__}: {exc}"})


def main() -> None:
    fd = os.open(find_port(), os.O_RDWR)
    with os.fdopen(os.dup(fd), "rb") as reader:
        serve(fd, reader)


if __name__ == "__main__":
    main()
