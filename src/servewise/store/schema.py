"""The store's tables, written once for both backends: the same tables and columns, each backend's own
name for a double, a byte string and the column that keeps annotations in the order they were written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """What differs in SQL between the backends; every query is otherwise the same text."""

    name: str
    real: str  # a 64-bit float (PostgreSQL's REAL is 32-bit)
    blob: str
    written_order: str  # the column that orders rows by insertion (SQLite's rowid, an identity elsewhere)
    written_order_column: str  # its declaration, where it has to be declared
    has_table: str  # a query with one ``?``, the table name, returning a row when the table exists


SQLITE = Dialect("sqlite", real="REAL", blob="BLOB", written_order="rowid", written_order_column="",
                 has_table="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
POSTGRES = Dialect("postgresql", real="DOUBLE PRECISION", blob="BYTEA", written_order="seq",
                   written_order_column="seq BIGINT GENERATED ALWAYS AS IDENTITY,",
                   has_table="SELECT 1 FROM information_schema.tables"
                             " WHERE table_schema = current_schema() AND table_name = ?")


def annotations_table(d: Dialect) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS annotations ({d.written_order_column} run_id TEXT NOT NULL,"
        f" kind TEXT NOT NULL, created_at {d.real} NOT NULL, value_json TEXT NOT NULL, PRIMARY KEY (run_id, kind))"
    )


def create_statements(d: Dialect) -> list[str]:
    """The current schema's tables and indexes; each statement idempotent."""
    return [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            parent_id TEXT,
            created_at {d.real} NOT NULL,
            finished_at {d.real},
            status TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            labels_json TEXT NOT NULL,
            tool_version TEXT NOT NULL,
            target_json TEXT NOT NULL,
            environment_json TEXT NOT NULL,
            summary_json TEXT,
            summary_schema INTEGER
        )""",
        "CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at)",
        f"""CREATE TABLE IF NOT EXISTS records (
            run_id TEXT NOT NULL,
            idx INTEGER NOT NULL,
            worker INTEGER NOT NULL,
            phase TEXT NOT NULL,
            t_sched {d.real} NOT NULL,
            t_send {d.real} NOT NULL,
            t_first {d.real},
            t_end {d.real},
            status INTEGER,
            error TEXT,
            error_detail TEXT,
            max_tokens INTEGER,
            input_tokens INTEGER,
            output_tokens INTEGER,
            tokens_source TEXT NOT NULL,
            finish_reason TEXT,
            chunk_offsets {d.blob},
            chunk_tokens {d.blob},
            cached_tokens INTEGER,
            session_id INTEGER,
            turn INTEGER,
            t_answer {d.real},
            reasoning_tokens INTEGER,
            PRIMARY KEY (run_id, idx)
        )""",
        f"""CREATE TABLE IF NOT EXISTS samples (
            run_id TEXT NOT NULL,
            t {d.real} NOT NULL,
            source TEXT NOT NULL,
            name TEXT NOT NULL,
            value {d.real} NOT NULL,
            labels_json TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS samples_run ON samples (run_id, source, name)",
        annotations_table(d),
    ]
