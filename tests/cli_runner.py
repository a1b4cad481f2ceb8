"""Run the real `servewise` command in a subprocess, as a user would (worker processes, signals and all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def servewise(
    *args: str, store: Path | None = None, env: dict[str, str] | None = None, timeout: float = 180
) -> CliResult:
    full_env = os.environ | {"COLUMNS": "160", "NO_COLOR": "1"} | (env or {})
    if store is not None:
        full_env["SERVEWISE_STORE"] = str(store)
    proc = subprocess.run(
        [sys.executable, "-m", "servewise", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def wait_for_records(store_path: Path, count: int, timeout_s: float = 60.0) -> None:
    """Until the running bench has stored ``count`` records (start-up is slow on a loaded machine)."""
    from servewise.store import RunStore

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if store_path.exists():
            with RunStore(store_path) as store:
                runs = store.list_runs(limit=1)
                if runs and store.count_records(runs[0].id) >= count:
                    return
        time.sleep(0.2)
    raise AssertionError(f"the run stored fewer than {count} records in {timeout_s}s")
