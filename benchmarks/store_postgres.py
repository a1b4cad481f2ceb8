"""The one-million-request run's records written to PostgreSQL, beside SQLite (issue 17).

    .venv/bin/python benchmarks/store_postgres.py append [--records 1000000] [--batch 300]
    .venv/bin/python benchmarks/store_postgres.py bench [--trace-requests 1000000] [--trace-rate 3000]

``append``: the parent's write path alone. Records as the workers ship them (``record_to_row`` tuples, 16
chunks each, as nginx's body in benchmarks/loadgen), ``--batch`` a call (300: 100 ms of a 3,000 req/s run),
appended as fast as each store takes them, then read back in full as the run's summary does. Each store in
a fresh process of its own: rows/s written and read, each batch's append time (what the event loop pays
every 100 ms), the process's RSS every 100,000 rows and its peak. PostgreSQL with its default durability
(fsync on) on a local server from tests/fixtures/postgres.py, pinned to CPU 1; both COPY (what the store
does) and executemany (what it would do without COPY).

``bench``: the real one-million-request run, ``servewise bench --trace`` of a Poisson 3,000 req/s trace against
run.py's nginx, once into SQLite and once into the PostgreSQL server (release_check.trace: the client tree
on CPU 0, nginx and PostgreSQL on CPU 1, whole-tree RSS every 0.5 s, client-limited or not, schedule lag),
then every record counted in the store.

Prints one JSON document; ``--out FILE`` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks" / "loadgen"))

import release_check  # noqa: E402
import run as loadgen  # noqa: E402

from fixtures.postgres import postgres_server  # noqa: E402
from servewise.records import Phase, RequestRecord, TokenSource, record_to_row  # noqa: E402
from servewise.store import open_store  # noqa: E402
from servewise.store.postgres import PostgresConnection  # noqa: E402


def _row_template() -> tuple[Any, ...]:
    t = 1000.0
    chunks = [t + 0.05 + 0.001 * k for k in range(16)]
    return record_to_row(RequestRecord(
        index=0, worker=0, phase=Phase.STEADY, t_sched=t, t_send=t, t_first=chunks[0], t_end=chunks[-1],
        status=200, max_tokens=16, input_tokens=64, output_tokens=16, output_tokens_source=TokenSource.USAGE,
        finish_reason="length", chunk_times=chunks,
    ))  # fmt: skip


def _executemany(self: PostgresConnection, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
    """The store's insert without COPY, for comparison."""
    marks = ", ".join(["%s"] * len(columns))
    with self._db.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def append_one(location: str, records: int, batch: int, method: str) -> dict[str, Any]:
    """In this process: ``records`` rows appended ``batch`` at a time into a new store, then read back."""
    if method == "executemany":
        PostgresConnection.insert_many = _executemany  # type: ignore[method-assign]
    template = _row_template()
    times: list[float] = []
    rss: list[tuple[int, float]] = [(0, round(_rss_mib(), 1))]
    with open_store(location) as store:
        run_id = store.create_run(kind="bench", spec={}, labels={}, tool_version="bench", target={}, environment={})
        t0 = time.perf_counter()
        for start in range(0, records, batch):
            rows = [(i, *template[1:]) for i in range(start, min(start + batch, records))]
            t = time.perf_counter()
            store.append_rows(run_id, rows)
            times.append(time.perf_counter() - t)
            if (start + batch) % 100_000 < batch:
                rss.append((start + batch, round(_rss_mib(), 1)))
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read = sum(1 for _ in store.iter_records(run_id))
        read_s = time.perf_counter() - t0
        rss.append((records, round(_rss_mib(), 1)))
        counted = store.count_records(run_id)
    ms = sorted(1000 * t for t in times)
    return {
        "records": records, "batch": batch, "method": method, "stored": counted, "read": read,
        "write_rows_per_s": round(records / write_s), "read_rows_per_s": round(read / read_s),
        "batch_ms": {"p50": round(ms[len(ms) // 2], 2), "p99": round(ms[int(len(ms) * 0.99)], 2),
                     "max": round(ms[-1], 2)},
        "rss_mib_by_rows": rss, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }  # fmt: skip


def _in_child(location: str, args: argparse.Namespace, method: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "append-one", location, "--records", str(args.records),
                           "--batch", str(args.batch), "--method", method],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def append(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results = {"sqlite": _in_child(str(workdir / "append.db"), args, "copy")}
    with postgres_server(durable=True, cpus="1") as server:
        os.environ.update(server.env)
        results["postgresql_copy"] = _in_child(server.url(server.create_database()), args, "copy")
        results["postgresql_executemany"] = _in_child(server.url(server.create_database()), args, "executemany")
    return results


def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    trace_file = workdir / "trace.jsonl"
    release_check.write_trace(trace_file, args.trace_requests, args.trace_rate)
    ns = argparse.Namespace(sched=args.sched, new=str(loadgen.SERVEWISE), time_scale=None,
                            trace_requests=args.trace_requests, trace_rate=args.trace_rate,
                            trace_file=str(trace_file))  # fmt: skip
    servers = loadgen.start_servers(ns, workdir)
    results: dict[str, Any] = {}
    try:
        with postgres_server(durable=True, cpus="1") as server:
            os.environ.update(server.env)
            stores = {"sqlite": str(workdir / "trace.db"), "postgresql": server.url(server.create_database())}
            for name, location in stores.items():
                print(f"{name}: {location}", file=sys.stderr, flush=True)
                result = release_check.trace(ns, workdir / name, store=location)
                run_id = json.loads((workdir / name / "trace-result.json").read_text())["run_id"]
                with open_store(location) as store:
                    result["stored_records"] = store.count_records(run_id)
                result["stored_rows_per_s"] = round(result["stored_records"] / result["wall_s"])
                results[name] = result
    finally:
        for proc in servers:
            os.killpg(proc.pid, 15)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["append", "bench", "append-one"])
    parser.add_argument("location", nargs="?", help="append-one: the store")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=300)
    parser.add_argument("--method", choices=["copy", "executemany"], default="copy")
    parser.add_argument("--trace-requests", type=int, default=1_000_000)
    parser.add_argument("--trace-rate", type=float, default=3000)
    parser.add_argument("--sched", choices=["rt", "nice", "none"], default="rt")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.part == "append-one":
        print(json.dumps(append_one(args.location, args.records, args.batch, args.method)))
        return
    workdir = Path(tempfile.mkdtemp(prefix="servewise-store-bench-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    machine = loadgen.machine()
    try:
        result = {"append": append, "bench": bench}[args.part](args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result |= {"machine": machine | {"loadavg_end": os.getloadavg()}, "started": started,
               "ended": time.strftime("%H:%M:%S UTC", time.gmtime()), "argv": sys.argv[1:]}  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
