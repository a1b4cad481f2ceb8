"""Production-shaped traffic against the exact-timing server: sessions with live history, shared prefixes,
what the cache did, per-turn TTFT, and a conversation that breaks mid-stream."""

from __future__ import annotations

import csv
import io
import json

import pytest

from servewise.protocols.openai import OpenAIAdapter
from servewise.spec import RunSpec, build_spec
from servewise.store import RunStore
from servewise.workload.plan import WorkloadPlan

from cli_runner import servewise


def bench(url, store, *extra, timeout=180):
    return servewise("bench", "--target", url, "--quiet", "--json", "-", *extra, store=store, timeout=timeout)


def test_closed_sessions_carry_the_live_history_and_the_cache_shows_it(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--load", "sessions:users=4,turns=3,think=50ms", "--requests", "24",
        "--input-tokens", "10", "--output-tokens", "5", "--shared-prefix", "50", "--no-telemetry",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    data = result.json()
    m = data["metrics"]
    assert m["requests_ok"] == 24 and m["requests_failed"] == 0
    turns = {row["turn"]: row for row in m["by_turn"]}
    assert set(turns) == {1, 2, 3} and all(row["requests"] == 8 for row in turns.values())
    # prefix 50 + the user's 10, then each turn adds the server's 5-word answer and a new 10-word message
    assert [turns[t]["mean_input_tokens"] for t in (1, 2, 3)] == [60, 75, 90]
    assert all(95 <= turns[t]["ttft_ms_p50"] < 160 for t in turns)  # TTFT 100 ms, at every turn
    cache = m["cache"]
    # the first conversation's prefix is new; every later prompt reuses all but its newest message
    assert 0.7 < cache["theoretical_hit_rate"] < 0.85
    assert cache["cached_tokens_ratio"] == pytest.approx(cache["theoretical_hit_rate"], abs=0.02)
    assert cache["engine_hit_rate"] is None  # the timing server exports no prefix-cache counters
    export = servewise("runs", "export", data["run_id"], "--format", "csv", store=store_path)
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert len(rows) == 24 and {r["turn"] for r in rows} == {"1", "2", "3"}
    assert len({r["session_id"] for r in rows}) == 8 and all(r["cached_tokens"] != "" for r in rows)


def test_open_sessions_arrive_at_their_rate(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--load", "sessions:rate=8,turns=2,think=0s", "--duration", "2",
        "--input-tokens", "8", "--output-tokens", "4", "--no-telemetry",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    m = result.json()["metrics"]
    turns = {row["turn"]: row["requests"] for row in m["by_turn"]}
    # conversations arrive at about 8/s; only those begun in the last few hundred ms lose their second turn
    assert 6 <= turns[1] <= 30 and turns[1] - 5 <= turns[2] <= turns[1]
    with RunStore(store_path) as store:
        records = list(store.iter_records(result.json()["run_id"]))
    sessions = {r.session for r in records}
    assert len(sessions) == turns[1] and all(r.session is not None and r.turn in (1, 2) for r in records)


def test_an_answer_that_breaks_ends_its_conversation(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--model", "fault:reset-on-turn-2", "--load", "sessions:users=2,turns=4",
        "--duration", "2", "--input-tokens", "8", "--output-tokens", "6", "--no-telemetry",
    )  # fmt: skip
    data = result.json()
    with RunStore(store_path) as store:
        records = list(store.iter_records(data["run_id"]))
    second = [r for r in records if r.turn == 2]
    assert second and all(not r.ok for r in second)  # every second turn was reset mid-stream
    assert not [r for r in records if r.turn is not None and r.turn > 2]  # never built on a broken history
    assert data["metrics"]["requests_failed"] == len(second)
    assert len([r for r in records if r.turn == 1]) >= len(second)  # the users went on to new conversations


def test_single_turn_prompts_share_exactly_their_prefix(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--load", "constant:20", "--requests", "20", "--input-tokens", "30",
        "--output-tokens", "2", "--shared-prefix", "100,groups=2", "--no-telemetry",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    cache = result.json()["metrics"]["cache"]
    assert cache["theoretical_hit_rate"] == pytest.approx(18 * 100 / (20 * 130))
    assert cache["cached_tokens_ratio"] == pytest.approx(cache["theoretical_hit_rate"], abs=0.02)


def test_cache_cold_single_turn_is_the_baseline(timing_url, store_path):
    result = bench(timing_url, store_path, "--load", "constant:20", "--requests", "10", "--no-telemetry")
    cache = result.json()["metrics"]["cache"]
    assert cache["theoretical_hit_rate"] == 0.0 and cache["cached_tokens_ratio"] == 0.0


def test_a_trace_replays_its_arrivals_lengths_and_shared_blocks(timing_url, store_path, tmp_path):
    trace = tmp_path / "trace.jsonl"
    lines = [{"timestamp": i * 50, "input_length": 1100, "output_length": 4,
              "hash_ids": [1, 2] + ([100 + i] if i % 2 else [])} for i in range(40)]  # fmt: skip
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = bench(timing_url, store_path, "--trace", str(trace), "--time-scale", "2", "--no-telemetry")
    assert result.code == 0, result.stderr
    data = result.json()
    m = data["metrics"]
    assert data["load"] == "trace replay" and m["requests_ok"] == 40 and m["mean_input_tokens"] == 1100
    assert m["offered_rps"] == pytest.approx(40, rel=0.01)  # 20 req/s in the trace, replayed twice as fast
    # two 512-token blocks are shared by every request; the rest of each prompt is its own
    assert m["cache"]["theoretical_hit_rate"] == pytest.approx(39 * 1024 / (40 * 1100))


def test_a_bad_trace_line_stores_nothing(timing_url, store_path, tmp_path):
    trace = tmp_path / "trace.jsonl"
    trace.write_text('{"timestamp": 0, "input_length": 10, "output_length": 4}\n{"timestamp": 5, "input_length": -3}\n')
    result = bench(timing_url, store_path, "--trace", str(trace))
    assert result.code == 2 and "line 2" in result.stderr and "Traceback" not in result.stderr
    assert not store_path.exists() or not RunStore(store_path).list_runs()


def test_sharegpt_conversations_replay_whole_with_live_answers(timing_url, store_path, tmp_path):
    dataset = tmp_path / "chats.jsonl"
    lines = []
    for c in range(3):
        turns = [{"from": "system", "value": "you are terse"}]
        for t in range(3):
            turns += [{"from": "human", "value": f"question {c} {t} " + "word " * 8},
                      {"from": "gpt", "value": "answer " * 4}]  # fmt: skip
        lines.append(json.dumps({"conversations": turns}))
    dataset.write_text("\n".join(lines) + "\n")
    result = bench(
        timing_url, store_path, "--dataset", str(dataset), "--load", "sessions:users=2,turns=10",
        "--requests", "18", "--no-telemetry",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    turns = {row["turn"]: row for row in result.json()["metrics"]["by_turn"]}
    assert set(turns) == {1, 2, 3}  # the file's three turns, whatever turns= allows
    # system 3 words + 11 per question; each answer is the server's live 5 words (the file's 4, x 1.3)
    assert [turns[t]["mean_input_tokens"] for t in (1, 2, 3)] == [14, 30, 46]


def test_a_reasoning_model_gets_its_time_to_first_answer(timing_url, store_path):
    result = bench(
        timing_url, store_path, "--model", "fault:reasoning", "--load", "constant:10", "--requests", "10",
        "--output-tokens", "8", "--no-telemetry",
    )  # fmt: skip
    m = result.json()["metrics"]
    assert 100 <= m["ttft_ms"]["p50"] < 115  # TTFT keeps its definition: the first content-bearing chunk
    reasoning = m["reasoning"]
    assert reasoning["requests"] == 10 and reasoning["mean_reasoning_tokens"] == 3
    assert 130 <= reasoning["ttfa_ms"]["p50"] < 145  # three reasoning chunks 10 ms apart come first


def test_a_model_that_does_not_reason_has_no_reasoning_block(timing_url, store_path):
    result = bench(timing_url, store_path, "--load", "constant:10", "--requests", "5", "--no-telemetry")
    assert "reasoning" not in result.json()["metrics"]


def test_the_same_seed_sends_the_same_bytes():
    spec = build_spec(
        spec_file=None, target="http://127.0.0.1:9", api=None, model=None, stream=None,
        load="sessions:users=3,turns=uniform:1,5", duration=None, requests=None, input_tokens="normal:40,10",
        output_tokens="8", dataset=None, tokenizer=None, seed=7, slo=None, warmup=None, cooldown=None, workers=None,
        labels=[], api_key_env=None, api_key_file=None, timeout=None, shared_prefix="64,groups=3",
    )  # fmt: skip
    first, second = WorkloadPlan(spec.workload), WorkloadPlan(spec.workload)
    adapter = OpenAIAdapter(spec.target, "m", None)
    assert [adapter.request_bytes(first.request(i)) for i in range(300)] == [
        adapter.request_bytes(second.request(i)) for i in range(300)
    ]
    assert [first.turn(c, t) for c in range(20) for t in range(1, 12)] == [
        second.turn(c, t) for c in range(20) for t in range(1, 12)
    ]
    # any worker builds any turn, in any order: the draws are keyed, not a stream
    backwards = WorkloadPlan(spec.workload)
    assert [backwards.turn(c, t) for c in reversed(range(20)) for t in reversed(range(1, 12))] == [
        first.turn(c, t) for c in reversed(range(20)) for t in reversed(range(1, 12))
    ]
    assert len({first.turn(c, 1).text for c in range(20)}) == 20
    assert [first.conversation_turns(c, spec.load.turns) for c in range(50)] == [
        second.conversation_turns(c, spec.load.turns) for c in range(50)
    ]
    assert isinstance(spec, RunSpec)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--load", "sessions:users=2"], "turns"),
        (["--load", "sessions:users=2,rate=3,turns=2"], "not both"),
        (["--load", "sessions:users=2,turns=2,pause=1s"], "pause"),
        (["--time-scale", "2"], "--trace"),
        (["--shared-prefix", "lots"], "--shared-prefix"),
    ],
)
def test_bad_traffic_flags_get_one_line(timing_url, store_path, args, needle):
    result = bench(timing_url, store_path, *args)
    assert result.code == 2 and needle in result.stderr and "Traceback" not in result.stderr
