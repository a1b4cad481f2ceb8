"""Run the real `servewise` command in a subprocess, as a user would (worker processes, signals and all)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
