"""Start a test server as a subprocess on a free loopback port; stop it by PID (its process group)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    pid: int
    port: int


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    unverified = ssl._create_unverified_context()  # readiness only; what is tested verifies
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was ready")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1, context=unverified).read()
            return
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready within {timeout_s}s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@contextlib.contextmanager
def timing_server(
    ttft_ms: float = 100.0, itl_ms: float = 10.0, capacity: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[RunningServer]:
    """The exact-timing fake server (tests/servers/timing_server.py) in its own process; HTTPS with ``tls``
    (certificate, key)."""
    port = free_port()
    cmd = [
        sys.executable,
        str(HERE / "timing_server.py"),
        "--port",
        str(port),
        "--ttft-ms",
        str(ttft_ms),
        "--itl-ms",
        str(itl_ms),
    ]
    if capacity:
        cmd += ["--capacity", str(capacity)]
    if tls:
        cmd += ["--tls", str(tls[0]), str(tls[1])]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        wait_ready(url + "/health", proc)
        yield RunningServer(url=url, pid=proc.pid, port=port)
    finally:
        stop(proc)


def assert_default_timing(metrics: dict) -> None:
    """A run of 20 output tokens against the default timing server: 100 ms to the first token, 10 ms between
    tokens, within what the client's own measurement adds."""
    assert 100 <= metrics["ttft_ms"]["p50"] < 106, metrics["ttft_ms"]
    assert 9.5 <= metrics["tpot_ms"]["p50"] < 11, metrics["tpot_ms"]
    assert 9 <= metrics["itl_ms"]["p50"] < 11.5, metrics["itl_ms"]
    assert 290 <= metrics["e2e_ms"]["p50"] < 310, metrics["e2e_ms"]
