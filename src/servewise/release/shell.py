"""The team's own deploy and rollback commands, run through ``/bin/sh -c`` in a session of their own:
bounded by a timeout, stopped with their whole process group on a timeout or Ctrl-C, their output kept in a
log file (not a pipe, so a server a script leaves behind cannot hold the step open) with any value of an
environment variable the command names masked."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servewise.results.release import StepStatus
from servewise.signals import held_signals

TAIL_BYTES = 4096
STOP_GRACE_S = 5.0
_ENV_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_MIN_MASKED = 4  # shorter values ("1", "on") would mask every digit in the output


@dataclass(frozen=True, slots=True)
class CommandRun:
    status: StepStatus
    exit_code: int | None  # None when it was stopped
    output_tail: str
    started_at: float  # epoch seconds
    finished_at: float
    t0: float  # perf_counter at the start: what time to ready counts from


def mask_env(text: str, command: str, env: Mapping[str, str]) -> str:
    """Every value of a variable ``command`` references (``$NAME``, ``${NAME}``) replaced by its name."""
    for name in sorted(set(_ENV_REFERENCE.findall(command))):
        value = env.get(name, "")
        if len(value) >= _MIN_MASKED:
            text = text.replace(value, f"${name}")
    return text


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the command's process group, SIGKILL what is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_command(command: str, timeout_s: float, log_path: Path, grace_s: float = STOP_GRACE_S) -> CommandRun:
    """Run ``command`` to its end, its timeout or a Ctrl-C (stopped either way); never raises for them."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started_at, t0 = time.time(), time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    status: StepStatus
    try:
        code: int | None = proc.wait(timeout=timeout_s)
        status = "ok" if code == 0 else "failed"
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as stopped:
        status = "timeout" if isinstance(stopped, subprocess.TimeoutExpired) else "interrupted"
        with held_signals():
            _stop_group(proc, grace_s)
        code = None
    output = mask_env(log_path.read_bytes().decode(errors="replace"), command, os.environ)
    log_path.write_text(output)
    tail = output.encode()[-TAIL_BYTES:].decode(errors="ignore")
    return CommandRun(status, code, tail, started_at, time.time(), t0)
