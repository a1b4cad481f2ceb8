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
def prometheus_process(
    tmp_path: Path, config: str, data_dir: Path, *flags: str, timeout_s: float = 30
) -> Iterator[str]:
    """Prometheus with this config text and TSDB folder on a free port: its URL once /-/ready answers.
    Stopped by PID; a start that fails says why with the end of its log."""
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (apt-get install -y --no-install-recommends prometheus)")
    port = free_port()
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(config)
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={data_dir}",
             f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + timeout_s
            while True:
                with (
                    contextlib.suppress(OSError),
                    urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp,
                ):
                    if resp.status == 200:
                        break
                if time.time() > deadline or proc.poll() is not None:
                    pytest.fail(f"prometheus did not become ready: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, targets: list[str], job: str = "engine") -> Iterator[str]:
    """Prometheus scraping ``targets`` (host:port) every second; its URL once a first scrape has landed."""
    listed = ", ".join(f"'{t}'" for t in targets)
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n    static_configs: [{{targets: [{listed}]}}]\n"
    )
    with prometheus_process(tmp_path, config, tmp_path / "data") as url:
        deadline = time.time() + 30
        while not query_range(url, "up == 1", time.time() - 5, time.time(), 1):  # a first scrape landed
            if time.time() > deadline:
                pytest.fail("prometheus never scraped its targets")
            time.sleep(0.2)
        yield url
