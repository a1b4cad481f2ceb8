"""The continuous-batching engine core, shared by the offline simulator and the real-time twin.

vLLM-like: a waiting queue served first come, first served; each step has a token budget that
decoding sequences (one token each) fill first, then prefill chunks (chunked prefill) — or, with
chunked prefill off, steps that only prefill whenever a waiting request can start; the KV cache is
counted in tokens and a request is admitted only when its whole prompt fits; when decoding needs
room that is not there, the most recently admitted request is preempted and recomputed later. With
``EngineConfig.guaranteed_no_evict`` (TensorRT-LLM's default scheduler) a request is admitted only when
its prompt and its whole output fit beside the final lengths of those running, and none is preempted.

Speed: a decoding sequence's context is never updated token by token. A global decode-step counter
``G`` advances; a sequence stores where it joined (``g0``, ``ctx0``), so its context is
``ctx0 + G - g0`` and the batch's total context is ``S + D·G``. Runs of pure-decode steps between
events therefore advance in one closed-form jump (step time is linear in the total context).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from servewise.capacity.memory import EngineConfig
from servewise.capacity.perf import StepModel


class Seq:
    """One request inside the engine. ``prompt`` grows by the generated tokens when it is preempted."""

    __slots__ = ("arrival", "ctx0", "epoch", "finish_at", "finished_at", "first_token", "g0", "gen", "gen0",
                 "idx", "input_tokens", "out", "preemptions", "prefilled", "prompt", "scheduled", "state")

    def __init__(self, idx: int, prompt: int, out: int, arrival: float) -> None:
        self.idx = idx
        self.prompt = prompt
        self.input_tokens = prompt
        self.out = max(1, out)
        self.arrival = arrival
        self.prefilled = 0
        self.gen = 0
        self.gen0 = 0
        self.ctx0 = 0
        self.g0 = 0
        self.finish_at = 0
        self.epoch = 0
        self.preemptions = 0
        self.first_token: float | None = None
        self.finished_at: float | None = None
        self.scheduled: float | None = None
        self.state = "waiting"


@dataclass(slots=True)
class StepResult:
    """What one engine step did: its length and which requests got a token, a first token, or finished."""

    duration: float
    steps: int = 1
    decoded: list[Seq] = field(default_factory=list)
    first_tokens: list[Seq] = field(default_factory=list)
    finished: list[Seq] = field(default_factory=list)
    preempted: list[Seq] = field(default_factory=list)


class BatchEngine:
    """Scheduler state and the step function; it keeps no clock of its own (callers pass ``now``)."""

    def __init__(self, step_model: StepModel, kv_capacity_tokens: int, engine: EngineConfig) -> None:
        self.model = step_model
        self.capacity = int(kv_capacity_tokens)
        self.engine = engine
        self.waiting: deque[Seq] = deque()
        self.prefilling: list[Seq] = []
        self.running: list[Seq] = []  # admission order: prefilling and decoding
        self._heap: list[tuple[int, int, int, Seq]] = []
        self.G = 0
        self._S = 0  # sum over decoding seqs of (ctx0 - g0)
        self.D = 0  # decoding seqs
        self._reserved_prefill = 0
        self._reserved_final = 0  # guaranteed_no_evict: sum of running requests' input + output
        self.preemptions = 0
        self.prefill_tokens_done = 0
        self.output_tokens_done = 0
        self.max_kv_used = 0
        self._watermark = int(0.01 * self.capacity)

    # -- state ----------------------------------------------------------------------------------

    @property
    def kv_used(self) -> int:
        return self._S + self.D * self.G + self._reserved_prefill

    @property
    def num_waiting(self) -> int:
        return len(self.waiting)

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def idle(self) -> bool:
        return not self.running and not self.waiting

    def context(self, seq: Seq) -> int:
        return seq.ctx0 + self.G - seq.g0

    def generated(self, seq: Seq) -> int:
        return seq.gen0 + self.G - seq.g0 if seq.state == "decoding" else seq.gen

    def add(self, seq: Seq) -> None:
        if seq.prompt + seq.out > self.capacity:
            raise ValueError(f"a request of {seq.prompt} + {seq.out} tokens cannot fit a KV cache of "
                             f"{self.capacity} tokens")
        self.waiting.append(seq)

    def _can_admit(self, growth: int = 0) -> bool:
        """Room for the head of the queue's whole prompt, ``growth`` tokens the step's decoders append,
        and a 1% watermark (vLLM's), so a fresh admission is not preempted at once."""
        if not self.waiting or len(self.running) >= self.engine.max_num_seqs:
            return False
        head = self.waiting[0]
        if self.engine.guaranteed_no_evict:
            return self._reserved_final + head.input_tokens + head.out <= self.capacity
        return self.kv_used + growth + head.prompt + 1 + self._watermark <= self.capacity

    # -- transitions ----------------------------------------------------------------------------

    def _admit(self, now: float) -> Seq:
        seq = self.waiting.popleft()
        seq.state = "prefilling"
        seq.prefilled = 0
        if seq.scheduled is None:
            seq.scheduled = now
        self._reserved_prefill += seq.prompt
        self._reserved_final += seq.input_tokens + seq.out
        self.prefilling.append(seq)
        self.running.append(seq)
        return seq

    def _preempt(self, result: StepResult) -> None:
        victim = self.running.pop()
        self._reserved_final -= victim.input_tokens + victim.out
        if victim.state == "decoding":
            victim.gen = self.generated(victim)
            self._S -= victim.ctx0 - victim.g0
            self.D -= 1
            victim.epoch += 1
            victim.prompt = victim.input_tokens + victim.gen
        else:
            self.prefilling.remove(victim)
            self._reserved_prefill -= victim.prompt
        victim.prefilled = 0
        victim.state = "waiting"
        victim.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(victim)
        result.preempted.append(victim)

    def _start_decoding(self, seq: Seq, now: float, result: StepResult) -> None:
        self._reserved_prefill -= seq.prompt
        seq.gen += 1
        self.output_tokens_done += 1
        if seq.first_token is None:
            seq.first_token = now
            result.first_tokens.append(seq)
        else:
            result.decoded.append(seq)
        if seq.gen >= seq.out:
            self._finish(seq, result, now)
            return
        seq.state = "decoding"
        seq.ctx0, seq.g0, seq.gen0 = seq.prompt, self.G, seq.gen
        seq.finish_at = self.G + seq.out - seq.gen
        self._S += seq.ctx0 - seq.g0
        self.D += 1
        heapq.heappush(self._heap, (seq.finish_at, seq.epoch, seq.idx, seq))

    def _finish(self, seq: Seq, result: StepResult, now: float) -> None:
        if seq.state == "decoding":
            seq.gen = seq.out
            self._S -= seq.ctx0 - seq.g0
            self.D -= 1
        seq.state = "finished"
        seq.finished_at = now
        self.running.remove(seq)
        self._reserved_final -= seq.input_tokens + seq.out
        result.finished.append(seq)

    def _pop_finished(self, result: StepResult, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= self.G:
            _, epoch, _, seq = heapq.heappop(heap)
            if epoch == seq.epoch and seq.state == "decoding":
                self._finish(seq, result, now)

    def _next_finish(self) -> int | None:
        heap = self._heap
        while heap and (heap[0][1] != heap[0][3].epoch or heap[0][3].state != "decoding"):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def abort(self, seq: Seq) -> None:
        """Drop a request wherever it is (a client that went away); frees its KV at once."""
        if seq.state == "waiting":
            self.waiting.remove(seq)
        elif seq.state == "prefilling":
            self.prefilling.remove(seq)
            self._reserved_prefill -= seq.prompt
            self._reserved_final -= seq.input_tokens + seq.out
            self.running.remove(seq)
        elif seq.state == "decoding":
            self._S -= seq.ctx0 - seq.g0
            self.D -= 1
            self._reserved_final -= seq.input_tokens + seq.out
            seq.epoch += 1
            self.running.remove(seq)
        seq.state = "aborted"

    # -- stepping -------------------------------------------------------------------------------

    def can_fast_forward(self) -> bool:
        """Pure decode until the next event: nothing prefilling and nothing admissible."""
        return self.D > 0 and not self.prefilling and not self._can_admit()

    def step(self, now: float, want_decoded: bool = True) -> StepResult:
        """One engine iteration starting at ``now``; token times are ``now + result.duration``."""
        result = StepResult(0.0)
        while self.D and self.kv_used + self.D > self.capacity:
            self._preempt(result)
        admit = not result.preempted  # vLLM V1: no new admissions in a step that had to preempt
        budget = self.engine.max_batched_tokens
        prefill_first = not self.engine.chunked_prefill and (self.prefilling or (admit and self._can_admit()))
        decoding = 0 if prefill_first else self.D
        budget -= decoding
        chunks: list[tuple[Seq, int]] = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            chunk = min(seq.prompt - seq.prefilled, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        while admit and budget > 0 and self._can_admit(decoding):
            seq = self._admit(now)
            chunk = min(seq.prompt, budget)
            chunks.append((seq, chunk))
            budget -= chunk
        if not chunks and not decoding and self.waiting and not self.running:
            seq = self._admit(now)  # a prompt longer than the budget still has to start
            chunks.append((seq, min(seq.prompt, self.engine.max_batched_tokens)))
        prefill_tokens = sum(c for _, c in chunks)
        pairs = sum(c * (s.prefilled + c / 2) for s, c in chunks)
        decode_context = self._S + self.D * (self.G + 1) if decoding else 0
        result.duration = self.model.step_time(prefill_tokens, decoding, decode_context, pairs, len(chunks))
        end = now + result.duration
        if want_decoded and decoding:
            result.decoded = [s for s in self.running if s.state == "decoding"]
        self.max_kv_used = max(self.max_kv_used, self.kv_used + decoding)
        if decoding:
            self.G += 1
            self.output_tokens_done += decoding
        self.prefill_tokens_done += prefill_tokens
        for seq, chunk in chunks:
            seq.prefilled += chunk
        for seq, _ in chunks:
            if seq.prefilled >= seq.prompt:
                self.prefilling.remove(seq)
                self._start_decoding(seq, end, result)
        if decoding:
            self._pop_finished(result, end)
        return result

    def decode_run(self, now: float, until: float | None) -> StepResult:
        """Several pure-decode steps in one jump: up to the next finish, the KV limit, or the first step
        that ends at or after ``until`` (an arrival that may change the batch). Call only when
        ``can_fast_forward()``."""
        next_finish = self._next_finish()
        k = (next_finish - self.G) if next_finish is not None else 1
        k = min(k, (self.capacity - self.kv_used) // self.D)
        if k <= 1:
            return self.step(now, want_decoded=False)
        a, b = self.model.decode_step_coefficients(self.D)
        first = a + b * (self._S + self.D * (self.G + 1))
        growth = b * self.D
        if until is not None and now + first * k + growth * k * (k - 1) / 2 > until:
            # smallest j with now + j·first + growth·j(j-1)/2 >= until
            need = until - now
            half = growth / 2
            if half > 0:
                j = (-(first - half) + math.sqrt((first - half) ** 2 + 4 * half * need)) / (2 * half)
            else:
                j = need / first
            k = max(1, min(k, math.ceil(j - 1e-9)))
        duration = first * k + growth * k * (k - 1) / 2
        result = StepResult(duration, steps=k)
        self.max_kv_used = max(self.max_kv_used, self.kv_used + self.D * k)
        self.output_tokens_done += self.D * k
        self.G += k
        self._pop_finished(result, now + duration)
        return result
