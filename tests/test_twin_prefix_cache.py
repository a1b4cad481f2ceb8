"""The twin's prefix cache: block-hashed, evicting, sized from the KV budget, and what a bench sees of it.

Core tests drive ``BatchEngine`` by hand; the end-to-end ones run ``servewise bench`` (a subprocess, in a
thread) against a twin in this process and read the run's cache outcome and per-turn TTFT.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from servewise.capacity import (
    BatchEngine,
    Deployment,
    EngineConfig,
    PrefixCache,
    Seq,
    StepModel,
    block_hashes,
    builtin_catalog,
    fitted_efficiency,
    get_model,
)
from servewise.twin import start_twin
from servewise.twin.server import WORDS, prompt_pieces, sequence_blocks

from cli_runner import CliResult, servewise

B = 16
STEP = StepModel(
    Deployment(get_model("llama-3.1-8b"), builtin_catalog().get("rtx4090"), 1, "bf16", "bf16"),
    fitted_efficiency(),
)


def tokens(*runs: tuple[str, int]) -> list[str]:
    """A token sequence: ``n`` tokens of each named run, numbered so no two positions repeat."""
    return [f"{name}{i}" for name, n in runs for i in range(n)]


def engine(capacity: int = 100_000, cache: bool = True) -> BatchEngine:
    return BatchEngine(STEP, capacity, EngineConfig(), PrefixCache(B) if cache else None)


def drain(batch: BatchEngine, now: float = 0.0) -> float:
    """Step until idle; returns the clock."""
    while not batch.idle:
        now += batch.step(now).duration
    return now


def seq(idx: int, toks: list[str], out: int = 4) -> Seq:
    return Seq(idx, len(toks), out, 0.0, block_hashes(toks, B))


# -- the core -----------------------------------------------------------------------------------


def test_a_repeated_prefix_is_not_prefilled_again() -> None:
    batch = engine()
    shared = ("system", 1000)
    first = seq(0, tokens(shared, ("a", 200)))
    batch.add(first)
    drain(batch)
    computed_once = batch.prefill_tokens_done
    assert computed_once == 1200 and first.cached_tokens == 0
    second = seq(1, tokens(shared, ("b", 200)))
    second.arrival = 10.0
    batch.add(second)
    drain(batch, 10.0)
    # 1000 shared tokens are 62 whole blocks; the 63rd mixes in this request's own text
    assert second.cached_tokens == 62 * B
    assert batch.prefill_tokens_done - computed_once == 1200 - 62 * B
    assert batch.prefix_cache is not None
    assert (batch.prefix_cache.queries, batch.prefix_cache.hits) == (2400, 62 * B)
    # the same prompt on a cold engine computes all of it: its first token comes much later
    cold = engine()
    again = seq(2, tokens(shared, ("b", 200)))
    cold.add(again)
    drain(cold)
    assert second.first_token is not None and again.first_token is not None
    assert second.first_token - second.arrival < 0.5 * (again.first_token - again.arrival)


def test_the_last_token_is_always_computed() -> None:
    batch = engine()
    toks = tokens(("x", 4 * B))
    batch.add(seq(0, toks))
    drain(batch)
    repeat = seq(1, toks)
    batch.add(repeat)
    drain(batch, 5.0)
    assert repeat.cached_tokens == 3 * B  # the whole prompt is cached, but its last block is recomputed


def test_a_conversation_turn_finds_the_last_turn_and_its_answer() -> None:
    batch = engine()
    prompt = tokens(("sys", 300), ("u1", 40))
    answer = tokens(("ans", 50))
    first = Seq(0, len(prompt), len(answer), 0.0, block_hashes(prompt + answer, B))
    batch.add(first)
    drain(batch)
    second = seq(1, [*prompt, *answer, *tokens(("u2", 30))])
    batch.add(second)
    drain(batch, 5.0)
    # the answer's last token never entered the KV cache: 389 computed tokens are 24 whole blocks
    assert second.cached_tokens == 384


def test_requests_admitted_together_share_the_blocks_the_first_one_schedules() -> None:
    batch = engine()
    shared = ("system", 640)
    a, b = seq(0, tokens(shared, ("a", 100)), out=50), seq(1, tokens(shared, ("b", 100)), out=50)
    batch.add(a)
    batch.add(b)
    batch.step(0.0)  # both admitted in one step: vLLM v1 caches a block as soon as it is scheduled
    assert (a.cached_tokens, b.cached_tokens) == (0, 640)
    # held by both, the 40 shared blocks are in the KV cache once
    assert batch.kv_used == 2 * 740 - 640
    batch.step(1.0)
    assert batch.kv_used == batch.context(a) + batch.context(b) - 640
    drain(batch, 2.0)
    assert batch.kv_used == 0


def test_cached_blocks_nobody_holds_do_not_hold_back_admission() -> None:
    batch = engine(capacity=4000)
    batch.add(seq(0, tokens(("a", 1600))))
    drain(batch)
    cache = batch.prefix_cache
    assert cache is not None and cache.free_blocks == 100 and batch.kv_used == 0
    # 1600 + 1000 tokens fit beside nothing running; counting the 1600 cached ones, they would not
    running, admitted = seq(1, tokens(("b", 1600)), out=200), seq(2, tokens(("c", 1000)))
    batch.add(running)
    batch.add(admitted)
    batch.step(1.0)
    assert running.scheduled == admitted.scheduled == 1.0
    drain(batch, 2.0)
    assert cache.free_blocks * B <= batch.capacity  # the KV cache never held more than it has


def test_eviction_is_least_recently_freed_first_when_kv_is_short() -> None:
    batch = engine(capacity=4000)
    one, two, three = tokens(("one", 1600)), tokens(("two", 1600)), tokens(("three", 1600))
    now = 0.0
    for i, toks in enumerate((one, two)):
        batch.add(seq(i, toks))
        now = drain(batch, now)
    cache = batch.prefix_cache
    assert cache is not None and cache.free_blocks == 200  # both fit while nothing runs
    batch.add(seq(2, three))
    now = drain(batch, now)
    # running, the third left room for 149 free blocks: the oldest (one's, tail first) went, two's stayed
    assert cache.free_blocks <= (4000 - 1600) // B + 100
    hit_two, hit_one = seq(3, two), seq(4, one)
    batch.add(hit_two)
    now = drain(batch, now)
    batch.add(hit_one)
    drain(batch, now)
    assert hit_two.cached_tokens == 99 * B
    assert 0 < hit_one.cached_tokens < 60 * B  # its head survived: a tail is evicted before its head


def test_no_prefix_information_changes_nothing() -> None:
    """The cache on but no request naming blocks: every step and every token as without a cache."""
    rng = np.random.default_rng(3)
    ins, outs = rng.integers(50, 3000, 300), rng.integers(1, 400, 300)
    arrivals = np.cumsum(rng.exponential(0.05, 300))

    def run(cache: bool) -> list[tuple[float | None, float | None, int]]:
        batch = engine(capacity=30_000, cache=cache)
        seqs = [
            Seq(i, int(n), int(o), float(t))
            for i, (n, o, t) in enumerate(zip(ins, outs, arrivals, strict=True))
        ]
        now, nxt = 0.0, 0
        while nxt < len(seqs) or not batch.idle:
            while nxt < len(seqs) and seqs[nxt].arrival <= now:
                batch.add(seqs[nxt])
                nxt += 1
            if batch.idle:
                now = seqs[nxt].arrival
                continue
            now += batch.step(now).duration
        return [(s.first_token, s.finished_at, s.preemptions) for s in seqs]

    with_cache, without = run(True), run(False)
    assert with_cache == without
    assert sum(p for *_, p in without) > 0  # KV was short enough to preempt: the cache's bookkeeping ran


def test_the_books_balance_through_preemption_abort_and_chunked_prefill() -> None:
    """Shared prefixes on a KV cache too small for the load: every step, ``kv_used`` is each running
    request's tokens with every shared block counted once, and free blocks fit beside it."""
    rng = np.random.default_rng(0)
    capacity, cache = 20_000, PrefixCache(B)
    batch = BatchEngine(STEP, capacity, EngineConfig(max_batched_tokens=2048), cache)
    seqs, t = [], 0.0
    for i in range(200):
        prompt = tokens(
            (f"group{rng.integers(0, 5)}-", int(rng.integers(0, 3000))),
            (f"own{i}-", int(rng.integers(1, 500))),
        )
        out = int(rng.integers(1, 600))
        t += float(rng.exponential(0.02))
        seqs.append(Seq(i, len(prompt), out, t, block_hashes(prompt + tokens((f"answer{i}-", out)), B)))
    now, nxt, aborted = 0.0, 0, 0
    while nxt < len(seqs) or not batch.idle:
        while nxt < len(seqs) and seqs[nxt].arrival <= now:
            batch.add(seqs[nxt])
            nxt += 1
        if batch.idle:
            now = seqs[nxt].arrival
            continue
        if rng.random() < 0.01 and batch.running:
            batch.abort(batch.running[int(rng.integers(0, len(batch.running)))])
            aborted += 1
        now += batch.step(now).duration
        holders: dict[int, int] = {}
        for s in batch.running:
            for block in s.held:
                holders[block] = holders.get(block, 0) + 1
        tokens_held = sum(batch.context(s) if s.state == "decoding" else s.prompt for s in batch.running)
        assert batch.kv_used == tokens_held - B * sum(n - 1 for n in holders.values())
        assert batch.kv_used <= capacity
        assert cache.cached_blocks - cache.free_blocks == len(holders)
    assert batch.preemptions > 0 and aborted > 0 and cache.hits > 0.5 * cache.queries
    assert batch.kv_used == 0 and cache.free_blocks == cache.cached_blocks <= capacity // B


# -- the twin's tokens --------------------------------------------------------------------------


def test_the_twin_names_blocks_of_the_text_it_counts() -> None:
    assert prompt_pieces("the internationalization, 42") == [
        "the",
        "inter",
        "natio",
        "naliz",
        "ation",
        ",",
        "4",
        "2",
    ]
    assert prompt_pieces([5, 6, 7]) == [5, 6, 7]
    system, user = " ".join(["alpha"] * 40), "hello there"
    turn1 = sequence_blocks(prompt_pieces(f"{system}\n{user}"), 42, 30, B)  # 42 prompt tokens, then the 30-token answer
    answer = "".join(WORDS[i % len(WORDS)] for i in range(1, 31))  # what the twin streamed
    turn2 = sequence_blocks(prompt_pieces(f"{system}\n{user}\n{answer}\nand then"), 74, 5, B)
    assert len(turn1) == (42 + 30) // B == 4
    assert turn2[:4] == turn1  # the next turn's prompt starts with the whole last turn, answer included
    other_system = sequence_blocks(prompt_pieces(f"beta {system}\n{user}"), 43, 30, B)
    assert not set(other_system) & set(turn1)  # the same text after a different start is another block


# -- end to end ---------------------------------------------------------------------------------


async def _bench_on_twin(store: Path, args: list[str], **twin: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One bench (its own process, run from a thread) against a fresh twin in this loop: the run, and what
    the twin's /twin says of its prefix cache afterwards."""
    async with await start_twin(model="llama-3.1-8b", gpu="rtx4090", **twin) as handle:
        result: CliResult = await asyncio.to_thread(
            servewise, "bench", "--target", handle.url, "--quiet", "--json", "-", *args, store=store, timeout=240
        )  # fmt: skip
        async with aiohttp.ClientSession(handle.url) as http:
            info = (await (await http.get("/twin")).json())["prefix_cache"]
    assert result.code == 0, result.stderr[-3000:]
    return result.json(), info


def test_sessions_with_a_shared_prefix_hit_on_the_twin_and_ttft_falls(tmp_path: Path) -> None:
    args = ["--load", "sessions:users=4,turns=3,think=0s", "--shared-prefix", "1000", "--requests", "12",
            "--output-tokens", "32"]  # fmt: skip

    async def both() -> tuple[tuple[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]:
        return (await _bench_on_twin(tmp_path / "on.db", args, prefix_caching=True),
                await _bench_on_twin(tmp_path / "off.db", args, prefix_caching=False))  # fmt: skip

    (cached, info_on), (cold, info_off) = asyncio.run(both())
    on, off = cached["metrics"], cold["metrics"]
    ttft_on = {row["turn"]: round(row["ttft_ms_p50"], 1) for row in on["by_turn"]}
    ttft_off = {row["turn"]: round(row["ttft_ms_p50"], 1) for row in off["by_turn"]}
    print(f"\nsessions users=4 turns=3 think=0s, shared prefix 1000, llama-3.1-8b on rtx4090: cache {on['cache']}; "
          f"twin {info_on}; TTFT p50 ms by turn: cache on {ttft_on}, off {ttft_off}")  # fmt: skip
    assert info_on["enabled"] and info_on["block_size"] == 16 and not info_off["enabled"]
    assert on["requests_ok"] == 12 and off["requests_ok"] == 12
    engine_rate, theoretical = on["cache"]["engine_hit_rate"], on["cache"]["theoretical_hit_rate"]
    assert engine_rate is not None and theoretical > 0.6
    assert abs(engine_rate - theoretical) <= 0.10
    assert engine_rate == pytest.approx(info_on["hit_tokens"] / info_on["query_tokens"])
    # what each request was told it was served from the cache adds up to what the engine counted
    assert on["cache"]["cached_tokens_ratio"] == pytest.approx(engine_rate, abs=0.02)
    assert off["cache"]["engine_hit_rate"] is None and off["cache"]["cached_tokens_ratio"] is None
    assert set(ttft_on) == set(ttft_off) == {1, 2, 3}
    for turn in (2, 3):
        assert ttft_on[turn] < ttft_off[turn]


def test_a_mooncake_trace_with_shared_blocks_hits_on_the_twin(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    lines = [{"timestamp": i * 50, "input_length": 1100, "output_length": 4,
              "hash_ids": [1, 2] + ([100 + i] if i % 2 else [])} for i in range(40)]  # fmt: skip
    trace.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["--trace", str(trace), "--time-scale", "2"]
    run, info = asyncio.run(_bench_on_twin(tmp_path / "runs.db", args, prefix_caching=True))
    cache = run["metrics"]["cache"]
    print(
        f"\nMooncake trace, 40 requests of 1100 tokens sharing two 512-token blocks: cache {cache}; twin {info}"
    )
    assert run["metrics"]["requests_ok"] == 40
    assert cache["engine_hit_rate"] is not None and cache["engine_hit_rate"] > 0
    assert abs(cache["engine_hit_rate"] - cache["theoretical_hit_rate"]) <= 0.10
