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

Prefix cache (optional, :class:`~servewise.capacity.prefix_cache.PrefixCache`; used only for requests
that carry ``Seq.blocks``, their blocks' chained names): as in vLLM v1, a request's blocks are cached as
soon as their tokens are scheduled, so a request admitted later, even in the same step, finds them; an
admitted request skips the prefill of its cached leading blocks (never its last token) and holds them. A
block several requests hold is counted once in ``kv_used``; blocks nobody holds stay cached, outside
``kv_used``, and are evicted as the running requests need their room. Generated tokens' blocks are cached
when their request lets go of its KV (it finishes, is preempted or aborted), which keeps pure-decode runs
a closed-form jump. Without a cache, or for requests without blocks, nothing changes.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from servewise.capacity.memory import EngineConfig
from servewise.capacity.perf import StepModel
from servewise.capacity.prefix_cache import PrefixCache


class Seq:
    """One request inside the engine. ``prompt`` grows by the generated tokens when it is preempted.

    ``blocks``: chained names of the full blocks of its tokens, prompt then output (see
    :func:`~servewise.capacity.prefix_cache.block_hashes`), for the prefix cache; empty: nothing to share.
    ``cached_tokens``: prompt tokens its first admission found in the cache (what a server reports as
    ``usage.prompt_tokens_details.cached_tokens``)."""

    __slots__ = (
        "arrival",
        "blocks",
        "cached_tokens",
        "cached_upto",
        "ctx0",
        "epoch",
        "finish_at",
        "finished_at",
        "first_token",
        "g0",
        "gen",
        "gen0",
        "held",
        "idx",
        "input_tokens",
        "out",
        "preemptions",
        "prefilled",
        "prompt",
        "scheduled",
        "state",
    )

    def __init__(self, idx: int, prompt: int, out: int, arrival: float, blocks: Sequence[int] = ()) -> None:
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
        self.blocks = blocks
        self.cached_tokens = 0
        # set when an engine with a prefix cache admits it (nothing to allocate for a simulation without)
        self.held: list[int]  # the cached blocks it holds, in order
        self.cached_upto: int  # how many leading blocks it found or cached


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

    def __init__(
        self,
        step_model: StepModel,
        kv_capacity_tokens: int,
        engine: EngineConfig,
        prefix_cache: PrefixCache | None = None,
    ) -> None:
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
        # KV tokens besides the decoding contexts: the prompts being prefilled, less the tokens saved by
        # cached blocks that several requests share (each is in the cache once)
        self._kv_other = 0
        self._reserved_final = 0  # guaranteed_no_evict: sum of running requests' input + output
        self.preemptions = 0
        self.prefill_tokens_done = 0
        self.output_tokens_done = 0
        self.max_kv_used = 0
        self._watermark = int(0.01 * self.capacity)
        self.prefix_cache = prefix_cache

    # -- state ----------------------------------------------------------------------------------

    @property
    def kv_used(self) -> int:
        return self._S + self.D * self.G + self._kv_other

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
            raise ValueError(
                f"a request of {seq.prompt} + {seq.out} tokens cannot fit a KV cache of "
                f"{self.capacity} tokens"
            )
        self.waiting.append(seq)

    def _can_admit(self, growth: int = 0) -> bool:
        """Room for the head of the queue's whole prompt, ``growth`` tokens the step's decoders append,
        and a 1% watermark (vLLM's), so a fresh admission is not preempted at once."""
        if not self.waiting or len(self.running) >= self.engine.max_num_seqs:
            return False
        head = self.waiting[0]
        if self.engine.guaranteed_no_evict:
            return self._reserved_final + head.input_tokens + head.out <= self.capacity
        cache = self.prefix_cache
        if cache is not None and head.blocks:  # cached blocks that running requests hold cost it nothing
            need = head.prompt - self._lookup(cache, head)[1] * cache.block_size
            return self.kv_used + growth + need + 1 + self._watermark <= self.capacity
        return self.kv_used + growth + head.prompt + 1 + self._watermark <= self.capacity

    # -- prefix cache ---------------------------------------------------------------------------

    def _evict(self, cache: PrefixCache) -> None:
        """Free cached blocks fit only in the room the running requests leave. The KV cache fills only
        between releases, so evicting before each lookup and each release evicts what it would have."""
        cache.evict(max(0, self.capacity - self.kv_used) // cache.block_size)

    def _lookup(self, cache: PrefixCache, seq: Seq) -> tuple[int, int]:
        """(cached leading blocks, of which held by running requests); the last token is always computed."""
        self._evict(cache)
        return cache.match(seq.blocks, (seq.prompt - 1) // cache.block_size)

    def _cache_scheduled(self, cache: PrefixCache, seq: Seq, tokens: int) -> None:
        """Cache and hold the blocks within a request's first ``tokens``, now scheduled."""
        blocks = seq.blocks
        end = min(tokens // cache.block_size, len(blocks))
        for i in range(seq.cached_upto, end):
            if cache.insert(blocks[i]):
                seq.held.append(blocks[i])
        seq.cached_upto = max(seq.cached_upto, end)

    def _release(self, cache: PrefixCache, seq: Seq) -> None:
        """A running request lets go of its KV (call before its state changes): its held blocks and the
        full blocks of its computed tokens not yet cached (its output) become free, cached blocks."""
        self._evict(cache)
        computed = self.context(seq) if seq.state == "decoding" else seq.prefilled
        end = min(computed // cache.block_size, len(seq.blocks))
        fresh = seq.blocks[seq.cached_upto : end] if end > seq.cached_upto else ()
        self._kv_other += cache.release(seq.held, fresh) * cache.block_size
        seq.held = []
        seq.cached_upto = 0

    # -- transitions ----------------------------------------------------------------------------

    def _admit(self, now: float) -> Seq:
        seq = self.waiting.popleft()
        seq.state = "prefilling"
        seq.prefilled = 0
        cache = self.prefix_cache
        if cache is not None:
            found, held = self._lookup(cache, seq) if seq.blocks else (0, 0)
            hit = seq.blocks[:found]
            cache.acquire(hit)
            cache.queries += seq.prompt
            cache.hits += found * cache.block_size
            seq.held = list(hit)
            seq.cached_upto = found
            seq.prefilled = found * cache.block_size
            self._kv_other -= held * cache.block_size
        if seq.scheduled is None:
            seq.scheduled = now
            seq.cached_tokens = seq.prefilled
        self._kv_other += seq.prompt
        self._reserved_final += seq.input_tokens + seq.out
        self.prefilling.append(seq)
        self.running.append(seq)
        return seq

    def _preempt(self, result: StepResult) -> None:
        victim = self.running.pop()
        if self.prefix_cache is not None:
            self._release(self.prefix_cache, victim)
        self._reserved_final -= victim.input_tokens + victim.out
        if victim.state == "decoding":
            victim.gen = self.generated(victim)
            self._S -= victim.ctx0 - victim.g0
            self.D -= 1
            victim.epoch += 1
            victim.prompt = victim.input_tokens + victim.gen
        else:
            self.prefilling.remove(victim)
            self._kv_other -= victim.prompt
        victim.prefilled = 0
        victim.state = "waiting"
        victim.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(victim)
        result.preempted.append(victim)

    def _start_decoding(self, seq: Seq, now: float, result: StepResult) -> None:
        self._kv_other -= seq.prompt
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
        if self.prefix_cache is not None:
            self._release(self.prefix_cache, seq)
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
        if self.prefix_cache is not None and seq.state in ("prefilling", "decoding"):
            self._release(self.prefix_cache, seq)
        if seq.state == "waiting":
            self.waiting.remove(seq)
        elif seq.state == "prefilling":
            self.prefilling.remove(seq)
            self._kv_other -= seq.prompt
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
        cache = self.prefix_cache
        chunks: list[tuple[Seq, int]] = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            chunk = min(seq.prompt - seq.prefilled, budget)
            chunks.append((seq, chunk))
            budget -= chunk
            if cache is not None:
                self._cache_scheduled(cache, seq, seq.prefilled + chunk)
        while admit and budget > 0 and self._can_admit(decoding):
            seq = self._admit(now)
            chunk = min(seq.prompt - seq.prefilled, budget)
            chunks.append((seq, chunk))
            budget -= chunk
            if cache is not None:
                self._cache_scheduled(cache, seq, seq.prefilled + chunk)
        if not chunks and not decoding and self.waiting and not self.running:
            seq = self._admit(now)  # a prompt longer than the budget still has to start
            chunk = min(seq.prompt - seq.prefilled, self.engine.max_batched_tokens)
            chunks.append((seq, chunk))
            if cache is not None:
                self._cache_scheduled(cache, seq, seq.prefilled + chunk)
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
