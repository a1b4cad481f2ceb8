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

# -- a real "remote" serving host (tests/remote_host.py): a network namespace over a veth pair --------------
# (imported inside the fixtures so this block stays apart from the imports above)


@pytest.fixture
def remote_host():
    """A fresh RemoteHost (own namespace, own 10.2xx address) per test; everything it started is killed by
    PID and the namespace deleted afterwards, failed test or not. Skips when not root / no `ip netns`."""
    from remote_host import RemoteHost, RemoteHostUnavailable

    host = RemoteHost()
    try:
        host.start()
    except RemoteHostUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield host
    finally:
        host.close()


@pytest.fixture
def remote_node_exporter(remote_host):
    """node_exporter inside `remote_host` on port 9100 (collectors cpu, meminfo, diskstats, netdev, loadavg,
    pressure); its URL "http://ADDR:9100/metrics", answering. Skips when node_exporter is not installed."""
    from remote_host import RemoteHostUnavailable, start_node_exporter

    try:
        proc, url = start_node_exporter(remote_host)
    except RemoteHostUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def remote_llama_server(remote_host):
    """The `llama_server` fixture's llama-server + tiny model, inside `remote_host`, on ADDR:8080;
    .base_url "http://ADDR:8080", .api_base, .model "tiny-llama", .pid, .remote (the RemoteHost)."""
    from remote_host import RemoteLlamaServer

    from engines.conftest_fixtures import _serve

    yield from _serve(RemoteLlamaServer, remote=remote_host)


# -- a real PostgreSQL server (tests/fixtures/postgres.py) for the shared run store -------------------------


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session; skipped without the package or psycopg."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[postgres]')")
    from fixtures.postgres import postgres_bin, postgres_server

    if postgres_bin() is None:
        pytest.skip("PostgreSQL not installed (apt-get install -y postgresql)")
    with postgres_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres, monkeypatch) -> str:
    """A fresh database on the session's server, its password in PGPASSWORD as a user's would be."""
    monkeypatch.setenv("PGPASSWORD", postgres.password)
    return postgres.url(postgres.create_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path: Path) -> str:
    """A new store on each backend in turn."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.db")
    return request.getfixturevalue("pg_url")
