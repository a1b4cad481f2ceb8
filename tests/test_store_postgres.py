"""The shared run store on a real PostgreSQL server (tests/fixtures/postgres.py): the whole store interface on
both backends, four benches writing at once while a gate service and a reader poll, migrations, push/pull,
and credentials that never leave the environment."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.postgres import ROLE, postgres_bin
from gate_service import get_json, serve_gate
from servewise.errors import StoreError, UnreachableError, UsageError
from servewise.flows.sync import newer_notes, runs_to_copy, sync_runs
from servewise.records import ErrorClass, Phase, RequestRecord, Sample, TokenSource
from servewise.results import GateMark, RepeatNote, RunResult
from servewise.results.gate import GateVerdict
from servewise.store import RunStore, Store, open_store, redact
from servewise.store.migrations import SCHEMA_VERSION
from servewise.store.sql import PAGE, RUN_PAGE

from cli_runner import servewise


def _record(i: int) -> RequestRecord:
    t_send = 1000.0 + i * 0.01
    if i % 7 == 3:
        return RequestRecord(index=i, worker=i % 2, t_sched=t_send, t_send=t_send, t_end=t_send + 0.5,
                             status=503, error=ErrorClass.HTTP_STATUS, error_detail="x" * 600,
                             phase=Phase.WARMUP)  # fmt: skip
    chunks = [t_send + 0.1 + 0.01 * k for k in range(5)]
    return RequestRecord(
        index=i, worker=i % 2, phase=Phase.STEADY, t_sched=t_send - 0.001, t_send=t_send, t_first=chunks[0],
        t_end=chunks[-1], status=200, max_tokens=16, input_tokens=64, output_tokens=5,
        output_tokens_source=TokenSource.USAGE, finish_reason="length", chunk_times=chunks,
        chunk_tokens=[1, 1, 1, 1, 1], cached_tokens=32, session=i // 4, turn=i % 4, t_answer=chunks[2],
        reasoning_tokens=2,
    )  # fmt: skip


def _samples(n: int = 3) -> list[Sample]:
    return [Sample(t=1000.0 + k, source="host", name="cpu", value=0.5 + k, labels=(("cpu", "0"),)) for k in range(n)]


def _bench(store: Store, labels: dict[str, str] | None = None, *, records: int = 20, **kw: object) -> str:
    run_id = store.create_run(kind="bench", spec={"load": {"kind": "poisson"}}, labels=labels or {},
                              tool_version="t", target={"url": "http://x"}, environment={"host": "h"},
                              **kw)  # fmt: skip
    store.append_records(run_id, [_record(i) for i in range(records)])
    store.append_samples(run_id, _samples())
    store.finish_run(run_id, RunResult(run_id=run_id, status="ok", load="poisson 1 req/s"))
    return run_id


def _read_back(store: Store, run_id: str) -> tuple:
    run = store.get_run(run_id)
    return (dataclasses.replace(run, created_at=0.0, finished_at=None), list(store.iter_records(run_id)),
            store.samples(run_id), store.count_records(run_id))  # fmt: skip


# -- the store interface on both backends -------------------------------------------------------------------


def test_every_method_reads_back_what_was_written(any_store: str) -> None:
    with open_store(any_store) as store:
        sweep = store.create_run(kind="sweep", spec={}, labels={"release": "v1"}, tool_version="t", target={},
                                 environment={})  # fmt: skip
        steps = [_bench(store, {"release": "v1"}, parent_id=sweep) for _ in range(3)]
        first = _bench(store, {"release": "v1", "team": "a"})
        second = _bench(store, {"release": "v2"})
        running = store.create_run(kind="coldstart", spec={}, labels={}, tool_version="t", target={},
                                   environment={})  # fmt: skip
        store.annotate(first, GateMark(verdict=GateVerdict.PASS, baseline="b", at=1.0))
        store.annotate(first, RepeatNote(spread={"ttft_ms_p50": 0.1}, group=[first]))
        store.annotate(first, GateMark(verdict=GateVerdict.FAIL, baseline="c", at=2.0))

        run = store.get_run(first)
        assert run.annotations.order == ["repeat", "gate"] and run.annotations.gate.verdict is GateVerdict.FAIL
        assert run.labels == {"release": "v1", "team": "a"} and run.spec == {"load": {"kind": "poisson"}}
        assert run.measured is not None and run.status == "ok" and run.finished_at is not None
        assert store.get_run(first[-9:]).id == first  # a unique part of the id
        with pytest.raises(StoreError, match="no run"):
            store.get_run("no-such-run")
        assert store.get_run(running).status == "running" and store.get_run(running).result is None

        assert [r.id for r in store.list_runs()] == [running, second, first, sweep]
        assert [r.id for r in store.list_runs(labels={"release": "v1"})] == [first, sweep]
        assert [r.id for r in store.list_runs(kind="bench", limit=1)] == [second]
        assert [r.id for r in store.list_runs(status="running")] == [running, sweep]
        assert [r.id for r in store.list_runs(parent_id=sweep)] == steps[::-1]
        assert len(store.list_runs(include_children=True)) == 7
        assert store.latest_run("bench").id == second and store.latest_run().id == running
        assert store.earlier_steps(store.get_run(steps[2])) == steps[:2]

        records = list(store.iter_records(first))
        assert [r.index for r in records] == list(range(20)) and store.count_records(first) == 20
        ok, failed = records[0], records[3]
        assert ok.chunk_tokens == [1, 1, 1, 1, 1] and ok.session == 0 and ok.turn == 0 and ok.cached_tokens == 32
        assert ok.chunk_times == pytest.approx(_record(0).chunk_times, abs=1e-4)
        assert failed.error is ErrorClass.HTTP_STATUS and len(failed.error_detail) == 500
        assert store.append_rows(second, []) == 0
        assert store.samples(first) == _samples() and store.samples(first, source="gpu") == []
    with pytest.raises(Exception):  # noqa: B017 (closed by the context manager: either backend's own error)
        store.count_records(first)


def test_open_store_picks_the_backend_from_flag_env_or_default(tmp_path, monkeypatch, pg_url) -> None:
    from servewise.store.postgres import PostgresStore

    monkeypatch.setenv("SERVEWISE_STORE", pg_url.replace("postgresql://", "postgres://"))
    with open_store() as store:
        assert isinstance(store, PostgresStore) and store.location.startswith("postgres://")
    with open_store(tmp_path / "flag.db") as store:  # the flag wins over the environment
        assert isinstance(store, RunStore) and store.location == str(tmp_path / "flag.db")
    monkeypatch.delenv("SERVEWISE_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with open_store() as store:
        assert isinstance(store, RunStore) and store.path == tmp_path / "data" / "servewise" / "runs.db"


def test_both_backends_read_back_the_same(tmp_path: Path, pg_url: str) -> None:
    with RunStore(tmp_path / "runs.db") as sqlite, open_store(pg_url) as postgres:
        for store in (sqlite, postgres):
            _bench(store, {"release": "v1"}, run_id="20261203-000000-aaaa")
            store.annotate("20261203-000000-aaaa", RepeatNote(spread={"ttft_ms_p50": 0.1}, group=["x"]))
        assert _read_back(sqlite, "20261203-000000-aaaa") == _read_back(postgres, "20261203-000000-aaaa")


def test_long_runs_and_many_runs_are_read_a_page_at_a_time(pg_url: str) -> None:
    with open_store(pg_url) as store:
        big = _bench(store, records=2 * PAGE + 17)
        ids = [store.create_run(kind="bench", spec={}, labels={}, tool_version="t", target={}, environment={})
               for _ in range(RUN_PAGE + 5)]  # fmt: skip
        assert [r.index for r in store.iter_records(big)] == list(range(2 * PAGE + 17))
        listed = [r.id for r in store.list_runs()]
        assert len(listed) == len(set(listed)) == RUN_PAGE + 6 and set(ids) < set(listed)


# -- four benches writing at once, a gate service and a reader polling --------------------------------------


@pytest.mark.slow
def test_four_benches_write_at_once_while_a_gate_and_a_reader_poll(pg_url, postgres, timing_url) -> None:
    requests = 300
    env = os.environ | postgres.env | {"SERVEWISE_STORE": pg_url, "NO_COLOR": "1"}
    open_store(pg_url).close()  # the schema exists before the four race to open it (they may race too: see below)
    server, base = serve_gate(pg_url, {"record": False, "between_run": "0.5"})
    gate_url = f"{base}/gate?baseline=label:bench=0&candidate=label:bench=1"
    args = [sys.executable, "-m", "servewise", "bench", "--target", timing_url, "--load", "poisson:40",
            "--requests", str(requests), "--output-tokens", "4", "--input-tokens", "16", "--quiet", "--no-telemetry"]
    benches = [
        subprocess.Popen([*args, "--label", f"bench={i}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(4)
    ]
    seen_finished: dict[str, int] = {}
    gate_answers: list[int] = []
    try:
        with open_store(pg_url) as reader:
            while any(b.poll() is None for b in benches):
                for run in reader.list_runs():
                    if run.status != "running":  # finished: every record must be there already
                        seen_finished[run.id] = reader.count_records(run.id)
                status, body = get_json(gate_url)
                assert status in (200, 400), body
                gate_answers.append(status)
                time.sleep(0.1)
        outputs = [b.communicate(timeout=120) for b in benches]
        final_status, final = get_json(gate_url)  # every run finished: the gate has its two sides
    finally:
        for b in benches:
            if b.poll() is None:
                b.kill()
        server.shutdown()
        server.server_close()
    assert [b.returncode for b in benches] == [0] * 4, outputs
    listed = servewise("runs", "list", "--json", store=pg_url, env=postgres.env)
    assert listed.code == 0, listed.stderr
    assert sorted(r["labels"]["bench"] for r in listed.json()) == ["0", "1", "2", "3"]
    with open_store(pg_url) as store:
        runs = store.list_runs()
        assert all(r.status == "ok" and r.measured.metrics.requests_total == requests for r in runs)
        assert all(store.count_records(r.id) == requests for r in runs)
        assert all(sorted(x.index for x in store.iter_records(r.id)) == list(range(requests)) for r in runs)
    assert seen_finished and all(count == requests for count in seen_finished.values()), seen_finished
    assert gate_answers, "the gate was never asked"
    assert final_status == 200 and final["verdict"] in ("pass", "fail", "inconclusive"), final


def test_benches_racing_to_create_a_new_store_agree_on_one_schema(postgres, pg_url) -> None:
    code = "import sys; from servewise.store import open_store; open_store(sys.argv[1]).close()"
    env = os.environ | postgres.env
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]  # fmt: skip
    assert [p.wait(timeout=60) for p in procs] == [0] * 4, [p.stderr.read() for p in procs if p.stderr]
    with open_store(pg_url) as store:
        assert store.list_runs() == []


# -- migrations --------------------------------------------------------------------------------------------

V2_RECORDS = """CREATE TABLE records (run_id TEXT NOT NULL, idx INTEGER NOT NULL, worker INTEGER NOT NULL,
    phase TEXT NOT NULL, t_sched DOUBLE PRECISION NOT NULL, t_send DOUBLE PRECISION NOT NULL,
    t_first DOUBLE PRECISION, t_end DOUBLE PRECISION, status INTEGER, error TEXT, error_detail TEXT,
    max_tokens INTEGER, input_tokens INTEGER, output_tokens INTEGER, tokens_source TEXT NOT NULL,
    finish_reason TEXT, chunk_offsets BYTEA, chunk_tokens BYTEA, PRIMARY KEY (run_id, idx))"""


def _psql(url: str, *statements: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        rows: list[tuple] = []
        for statement in statements:
            cursor = db.execute(statement)  # type: ignore[arg-type]
            rows = cursor.fetchall() if cursor.description else []
        return rows


def test_an_older_schema_is_upgraded_and_keeps_its_runs(pg_url: str) -> None:
    with open_store(pg_url) as store:  # a store at this release's schema, then taken back to version 2
        run_id = _bench(store, records=0)
    _psql(pg_url, "DROP TABLE records", V2_RECORDS,
          "INSERT INTO records (run_id, idx, worker, phase, t_sched, t_send, status, tokens_source)"
          f" VALUES ('{run_id}', 0, 0, 'steady', 1.0, 1.0, 200, 'usage')",
          "UPDATE meta SET value = '2' WHERE key = 'schema_version'")  # fmt: skip
    with open_store(pg_url) as store:
        assert [r.session for r in store.iter_records(run_id)] == [None]
        store.append_records(run_id, [_record(1)])
        assert [r.turn for r in store.iter_records(run_id)] == [None, 1]
    assert _psql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def test_a_store_from_a_newer_servewise_is_refused_with_one_line(pg_url: str, postgres) -> None:
    open_store(pg_url).close()
    _psql(pg_url, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer servewise"):
        open_store(pg_url)
    result = servewise("runs", "list", store=pg_url, env=postgres.env)
    assert result.code == 2 and "newer servewise" in _one_line(result)


# -- push and pull -----------------------------------------------------------------------------------------


def test_sync_decides_from_statuses_and_note_times() -> None:
    assert runs_to_copy({"a": "ok", "b": "ok", "c": "running", "d": "ok"},
                        {"a": "ok", "b": "running", "c": "running"}) == ["b", "d"]  # fmt: skip
    ours = [("r", "gate", 2.0, "{}"), ("r", "repeat", 1.0, "{}"), ("r", "plan", 5.0, "{}")]
    assert newer_notes(ours, [("r", "gate", 3.0, "{}"), ("r", "repeat", 0.5, "{}")]) == ours[1:]


def _export(location: str, run_id: str, env: dict[str, str]) -> str:
    result = servewise("runs", "export", run_id, store=location, env=env)
    assert result.code == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_push_then_pull_copies_every_run_once_and_exactly(tmp_path: Path, pg_url: str, postgres) -> None:
    local = str(tmp_path / "laptop.db")
    with open_store(local) as store:
        sweep = store.create_run(kind="sweep", spec={}, labels={}, tool_version="t", target={}, environment={})
        step = _bench(store, parent_id=sweep)
        gated = _bench(store, {"release": "v1"}, records=PAGE + 3)
        store.annotate(gated, GateMark(verdict=GateVerdict.PASS, baseline="b", at=1.0))
    pushed = servewise("runs", "push", "--to", pg_url, store=local, env=postgres.env)
    assert pushed.code == 0, pushed.stderr
    assert f"pushed 3 runs ({PAGE + 23:,} records)" in pushed.stdout and "0 already there" in pushed.stdout
    again = servewise("runs", "push", "--to", pg_url, store=local, env=postgres.env)
    assert "pushed 0 runs (0 records)" in again.stdout and "3 already there" in again.stdout, again.stdout

    with open_store(local) as store:  # the sweep finishes and the gate's verdict changes after the push
        store.finish_run(sweep, RunResult(run_id=sweep, status="ok"))
        store.annotate(gated, GateMark(verdict=GateVerdict.FAIL, baseline="c", at=2.0))
    third = servewise("runs", "push", "--to", pg_url, store=local, env=postgres.env)
    assert "pushed 1 run (0 records)" in third.stdout and "1 newer note brought over" in third.stdout, third.stdout

    fresh = str(tmp_path / "other-laptop.db")
    pulled = servewise("runs", "pull", "--from", pg_url, store=fresh, env=postgres.env)
    assert pulled.code == 0 and "pulled 3 runs" in pulled.stdout, pulled.stderr
    for run_id in (sweep, step, gated):
        assert _export(local, run_id, {}) == _export(pg_url, run_id, postgres.env) == _export(fresh, run_id, {})
    with open_store(fresh) as store:
        assert store.get_run(gated).annotations.gate.verdict is GateVerdict.FAIL
        assert store.get_run(step).parent_id == sweep and store.samples(step) == _samples()
    assert "pulled 0 runs" in servewise("runs", "pull", "--from", pg_url, store=fresh, env=postgres.env).stdout


def test_a_copy_cut_short_is_never_seen_and_is_started_over(tmp_path: Path, pg_url: str) -> None:
    with RunStore(tmp_path / "runs.db") as local, open_store(pg_url) as shared:
        run_id = _bench(local, records=PAGE + 1)
        copy = local.read_copy(run_id)
        pages = copy.record_pages
        cut = dataclasses.replace(copy, record_pages=iter([next(pages)]), sample_pages=iter(()))

        def crash(count: int) -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            shared.write_copy(cut, on_page=crash)
        assert shared.list_runs() == []  # its records are there, the run is not
        outcome = sync_runs(local, shared)
        assert outcome.copied == [run_id] and shared.count_records(run_id) == PAGE + 1


# -- credentials and errors --------------------------------------------------------------------------------


def test_redact_drops_every_password() -> None:
    assert redact("postgresql://ci:s3cret@db:5432/runs?sslmode=require&password=s3cret") == (
        "postgresql://ci@db:5432/runs?sslmode=require"
    )
    assert redact("postgres://db/runs") == "postgres://db/runs"


def test_a_password_in_the_url_is_never_stored_printed_or_exported(pg_url, postgres, timing_url) -> None:
    secret = postgres.password
    with_password = pg_url.replace("servewise@", f"servewise:{secret}@")
    env = {"PGPASSWORD": ""}  # only the URL carries it
    bench = servewise("bench", "--target", timing_url, "--requests", "5", "--output-tokens", "2", "--no-telemetry",
                      "--label", "release=v1", store=with_password, env=env)  # fmt: skip
    assert bench.code == 0, bench.stderr
    assert secret not in bench.stdout + bench.stderr and pg_url in bench.stdout  # "stored as run ... in URL"
    run_id = bench.stdout.split("stored as run ")[1].split()[0]
    outputs = [servewise(*args, store=with_password, env=env) for args in
               (("runs", "list", "--json"), ("runs", "show", run_id, "--json"), ("runs", "export", run_id),
                ("runs", "export", run_id, "--format", "csv"), ("runs", "show", run_id))]  # fmt: skip
    assert all(o.code == 0 and secret not in o.stdout + o.stderr for o in outputs)
    dump = subprocess.run([str(postgres_bin() / "pg_dump"), "--data-only", pg_url], env=os.environ | postgres.env, capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    assert run_id in dump and secret not in dump
    wrong = servewise("runs", "list", store=with_password.replace(secret, "not-" + secret), env=env)
    assert wrong.code == 3 and secret not in wrong.stderr


def _one_line(result) -> str:
    """The one error message (rich wraps it at the terminal's width: joined back here)."""
    assert result.stderr.count("error: ") == 1 and "Traceback" not in result.stderr, result.stderr
    return " ".join(result.stderr.split())


def test_unreachable_wrong_password_and_missing_database_are_one_line_exit_3(postgres, pg_url) -> None:
    closed = servewise("runs", "list", store=f"postgresql://{ROLE}@127.0.0.1:1/runs", env=postgres.env)
    assert closed.code == 3 and "cannot open the run store at postgresql://" in _one_line(closed)
    wrong = servewise("runs", "list", store=pg_url, env={"PGPASSWORD": "wrong-password"})
    assert wrong.code == 3 and "password authentication failed" in _one_line(wrong)
    assert "wrong-password" not in wrong.stderr and postgres.password not in wrong.stderr
    missing = servewise("runs", "list", store=postgres.url("no_such_db"), env=postgres.env)
    assert missing.code == 3 and 'database "no_such_db" does not exist' in _one_line(missing)
    with pytest.raises(UnreachableError):
        open_store(postgres.url("no_such_db"))


@pytest.mark.parametrize(
    "url", ["postgresql://ci:hunter2@db:notaport/runs", "postgresql://ci:hunter2@db/runs?nosuchoption=1"]
)
def test_a_malformed_url_is_exit_2(url: str) -> None:
    pytest.importorskip("psycopg")
    result = servewise("runs", "list", store=url)
    assert result.code == 2 and "malformed store URL postgresql://ci@db" in _one_line(result)
    assert "hunter2" not in result.stderr
    with pytest.raises(UsageError):
        open_store(url)


def test_without_psycopg_a_url_says_how_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "psycopg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test', name='psycopg')\n")
    result = servewise("runs", "list", store="postgresql://db/runs",
                       env={"PYTHONPATH": f"{blocker.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})  # fmt: skip
    assert result.code == 2
    assert _one_line(result) == "error: the PostgreSQL store needs psycopg: pip install 'servewise[postgres]'"
