"""Shared fixtures: the exact-timing server, a throwaway run store, the real engines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers.process import timing_server


@pytest.fixture(scope="session")
def timing_url():
    """One exact-timing server for the session: TTFT 100 ms, 10 ms between tokens."""
    with timing_server(ttft_ms=100, itl_ms=10) as server:
        yield server.url


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"

from engines.conftest_fixtures import infinity_server, llama_server, vllm_server  # noqa: E402, F401
