"""Offline discrete-event simulation of a continuous-batching server on a virtual clock.

Arrivals (open loop) or a fixed number of users (closed loop) and per-request lengths in;
per-request TTFT, TPOT, E2E, queueing and preemptions, throughput and KV usage out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from servewise.capacity.batching import BatchEngine, Seq
from servewise.capacity.memory import EngineConfig
from servewise.capacity.perf import StepModel, steady_state

PERCENTILES = (50, 90, 95, 99)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """``n`` arrival times of a Poisson process of ``rate`` requests per second, starting at 0."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, n)
    return np.cumsum(gaps) - gaps[0]


def constant_arrivals(n: int, rate: float) -> np.ndarray:
    return np.arange(n) / rate


def closed_loop_starts(step: StepModel, engine: EngineConfig, kv_capacity_tokens: int, users: int,
                       input_tokens: float, output_tokens: float, seed: int = 0) -> np.ndarray:
    """When each of ``users`` closed-loop users sends its first request: at random over one request's
    lifetime at that load (the fluid steady state's). Real users drift apart (client turnaround, scheduling
    noise), so a long benchmark sees their requests at random phases; users that all start at 0 and never
    drift stay in lock step forever in a deterministic simulation, every prompt queued behind the others."""
    state = steady_state(step, kv_capacity_tokens, engine, input_tokens, output_tokens, concurrency=users)
    lifetime = users / state.requests_per_s if state.requests_per_s > 0 else 0.0
    return np.sort(np.random.default_rng(seed).uniform(0.0, lifetime, users))


def stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"count": 0}
    out: dict[str, float] = {"count": int(values.size), "mean": float(values.mean()),
                             "min": float(values.min()), "max": float(values.max())}
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    return out


@dataclass(frozen=True, slots=True)
class SimResult:
    """Per-request arrays (seconds on the virtual clock; index = request order) and engine totals."""

    arrival: np.ndarray
    scheduled: np.ndarray
    first_token: np.ndarray
    finished: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    preemptions: np.ndarray
    duration_s: float
    busy_running_area: float  # time integral of the engine's running-request count
    kv_area: float  # time integral of KV tokens in use
    kv_capacity_tokens: int
    max_kv_used: int
    prefill_tokens_done: int
    output_tokens_done: int
    steps: int

    @property
    def ttft(self) -> np.ndarray:
        return self.first_token - self.arrival

    @property
    def e2e(self) -> np.ndarray:
        return self.finished - self.arrival

    @property
    def tpot(self) -> np.ndarray:
        many = self.output_tokens > 1
        return (self.finished[many] - self.first_token[many]) / (self.output_tokens[many] - 1)

    def counting(self, output_tokens: np.ndarray) -> SimResult:
        """The same run with each request's output counted as ``output_tokens`` real tokens: speculative
        decoding is simulated one step per verify step (``Speculation.virtual_outputs``), so TPOT and
        tokens/s must count what those steps emitted."""
        return replace(self, output_tokens=np.asarray(output_tokens, dtype=np.int64))

    @property
    def queue(self) -> np.ndarray:
        return self.scheduled - self.arrival

    def summary(self, warmup_fraction: float = 0.0) -> dict[str, Any]:
        """Percentiles (ms) over the requests after the warm-up fraction; throughput over the window
        between the warm-up and cool-down quantiles of finish times (drain and ramp excluded)."""
        n = self.arrival.size
        keep = np.arange(n) >= int(n * warmup_fraction)
        order = np.sort(self.finished)
        lo = order[int(n * warmup_fraction)] if warmup_fraction else self.arrival.min()
        hi = order[min(n - 1, int(n * (1 - warmup_fraction)))]
        in_window = (self.finished > lo) & (self.finished <= hi)
        span = max(hi - lo, 1e-12)
        many = self.output_tokens > 1
        tpot = (self.finished - self.first_token) / np.maximum(self.output_tokens - 1, 1)
        return {
            "requests": int(keep.sum()),
            "ttft_ms": stats(1e3 * self.ttft[keep]),
            "tpot_ms": stats(1e3 * tpot[keep & many]),
            "e2e_ms": stats(1e3 * self.e2e[keep]),
            "queue_ms": stats(1e3 * self.queue[keep]),
            "requests_per_s": float(in_window.sum() / span),
            "output_tokens_per_s": float(self.output_tokens[in_window].sum() / span),
            "kv_usage_mean": self.kv_area / max(self.duration_s, 1e-12) / self.kv_capacity_tokens,
            "kv_usage_max": self.max_kv_used / self.kv_capacity_tokens,
            "running_mean": self.busy_running_area / max(self.duration_s, 1e-12),
            "preemptions": int(self.preemptions.sum()),
        }


def simulate(step_model: StepModel, kv_capacity_tokens: int, engine: EngineConfig,
             input_tokens: np.ndarray, output_tokens: np.ndarray, *, arrivals: np.ndarray | None = None,
             concurrency: int | None = None, starts: np.ndarray | None = None) -> SimResult:
    """Run every request to completion. Give ``arrivals`` (open loop, sorted seconds) or ``concurrency``
    (closed loop: that many users, each sending its next request when the last one finishes; ``starts``: when
    each user sends its first, sorted, all at 0 by default — see :func:`closed_loop_starts`)."""
    n = len(input_tokens)
    if (arrivals is None) == (concurrency is None):
        raise ValueError("give either arrivals or concurrency")
    batch = BatchEngine(step_model, kv_capacity_tokens, engine)
    ins = np.asarray(input_tokens, dtype=np.int64)
    outs = np.maximum(np.asarray(output_tokens, dtype=np.int64), 1)
    times = np.zeros(n) if arrivals is None else np.asarray(arrivals, dtype=float)
    # requests whose arrival time is known up front: every one in an open loop, each user's first in a closed one
    timed = n if concurrency is None else min(concurrency, n)
    if concurrency is not None and starts is not None:
        times[:timed] = np.asarray(starts, dtype=float)[:timed]  # sorted, as closed_loop_starts gives them
    seqs: list[Seq] = []
    next_idx = 0
    next_user = timed
    start = now = float(times[0]) if n else 0.0
    done = 0
    steps = 0
    running_area = 0.0
    kv_area = 0.0

    def release(idx: int, at: float) -> None:
        seq = Seq(idx, int(ins[idx]), int(outs[idx]), at)
        seqs.append(seq)
        batch.add(seq)

    # Closed loop: a user's next request leaves when the last one finishes, but reaches the engine after
    # the next step has started (any real client needs a round trip), so it joins the step after.
    deferred: list[int] = []
    while done < n:
        if deferred and batch.idle:
            for idx in deferred:
                release(idx, now)
            deferred.clear()
        while next_idx < timed and times[next_idx] <= now:
            release(next_idx, float(times[next_idx]))
            next_idx += 1
        if batch.idle:
            now = float(times[next_idx])
            continue
        until = float(times[next_idx]) if next_idx < timed and not batch.waiting else None
        running = batch.num_running
        kv_before = batch.kv_used
        if not deferred and batch.can_fast_forward():
            result = batch.decode_run(now, until)
        else:
            result = batch.step(now, want_decoded=False)
        steps += result.steps
        running_area += running * result.duration
        kv_area += (kv_before + batch.D * (result.steps + 1) / 2) * result.duration
        now += result.duration
        done += len(result.finished)
        if concurrency is not None:
            for idx in deferred:
                release(idx, now - result.duration)
            deferred.clear()
            for _ in result.finished:
                if next_user < n:
                    deferred.append(next_user)
                    next_user += 1
    seqs.sort(key=lambda s: s.idx)
    api = step_model.request_overhead_s  # outside the engine: the client sees every token this much later
    return SimResult(
        arrival=np.array([s.arrival for s in seqs]),
        scheduled=np.array([s.scheduled for s in seqs]),
        first_token=np.array([s.first_token for s in seqs]) + api,
        finished=np.array([s.finished_at for s in seqs]) + api,
        input_tokens=ins.copy(),
        output_tokens=outs.copy(),
        preemptions=np.array([s.preemptions for s in seqs]),
        duration_s=now - start,
        busy_running_area=running_area,
        kv_area=kv_area,
        kv_capacity_tokens=batch.capacity,
        max_kv_used=batch.max_kv_used,
        prefill_tokens_done=batch.prefill_tokens_done,
        output_tokens_done=batch.output_tokens_done,
        steps=steps,
    )


def simulate_users(step_model: StepModel, kv_capacity_tokens: int, engine: EngineConfig, input_tokens: np.ndarray,
                   output_tokens: np.ndarray, users: int, seed: int = 0) -> SimResult:
    """A closed loop of ``users``, each starting at a random phase (:func:`closed_loop_starts`)."""
    starts = closed_loop_starts(step_model, engine, kv_capacity_tokens, users, float(np.mean(input_tokens)),
                                float(np.mean(output_tokens)), seed)
    return simulate(step_model, kv_capacity_tokens, engine, input_tokens, output_tokens, concurrency=users,
                    starts=starts)
