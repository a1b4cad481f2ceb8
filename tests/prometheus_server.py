"""A real Prometheus (Debian's package) for the tests: scraping given targets every second, stopped by PID."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from servewise.telemetry.promql import query_range

PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, targets: list[str], job: str = "engine") -> Iterator[str]:
    """Prometheus scraping ``targets`` (host:port) every second; its URL once a first scrape has landed."""
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt-get install -y --no-install-recommends prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n    static_configs: [{{targets: [{listed}]}}]\n"
    )
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 30
            while True:
                with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"prometheus did not become ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            while not query_range(url, "up == 1", time.time() - 5, time.time(), 1):  # a first scrape landed
                if time.time() > deadline:
                    pytest.fail("prometheus never scraped its targets")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
