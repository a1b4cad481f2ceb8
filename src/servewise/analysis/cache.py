"""What the prefix cache did, and what it could have done: two hit rates to put side by side.

``engine_hit_rate`` is the engine's own account, from the ``/metrics`` samples a run stored (the canonical
``prefix_cache_*`` signals of :mod:`servewise.telemetry.exposition`). ``theoretical_hit_rate`` is the
workload's ceiling: the share of prompt tokens an unbounded, never-evicting prefix cache would have served,
computed from the prompts alone. The gap between them is what eviction, block rounding, scheduling and
cache-blind routing cost; neither number alone says whether the cache is doing its job.

Pure arithmetic: no I/O, no engine names (those live in the telemetry map).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from itertools import pairwise

from servewise.records import Sample

QUERIES = "prefix_cache_queries_total"
HITS = "prefix_cache_hits_total"
HIT_RATE = "prefix_cache_hit_rate"
_BUSY = ("requests_running", "requests_waiting")


def engine_hit_rate(samples: Sequence[Sample]) -> float | None:
    """The engine's prefix-cache hit rate over the run: Δhits / Δqueries between the first and last scrape.

    Counters are preferred because they cover every prompt the run sent; the increase is Prometheus's
    (a drop means the engine restarted and counted again from zero, so the new value is all increase).
    A hit counter that shows up later than the query counter is read as zero until then: labelled counters
    are exported only once they first move, and SGLang's hit series moves with the first hit. A run in which the
    query counter did not move sent the engine nothing, so there is no rate: None.

    Engines that export only a hit-rate gauge (SGLang before its token counters, vLLM's v0 engine) report the
    rate of their latest window; its mean over the scrapes during which requests were running or waiting
    (every scrape, if the engine reports neither) is the closest reading: idle scrapes would only repeat a
    stale value or the zero the gauge starts at. None when the engine exports neither.
    """
    ticks: dict[str, dict[float, list[float]]] = {QUERIES: {}, HITS: {}, HIT_RATE: {}}
    busy: dict[float, float] = {}
    for s in samples:
        if s.source != "metrics":
            continue
        if s.name in ticks:
            ticks[s.name].setdefault(s.t, []).append(s.value)
        elif s.name in _BUSY:
            busy[s.t] = busy.get(s.t, 0.0) + s.value
    queries = sorted((t, sum(v)) for t, v in ticks[QUERIES].items())
    hits = sorted((t, sum(v)) for t, v in ticks[HITS].items())
    if queries and hits:
        if hits[0][0] > queries[0][0]:
            hits.insert(0, (queries[0][0], 0.0))
        asked = _increase([v for _, v in queries])
        if asked <= 0:
            return None
        return min(1.0, max(0.0, _increase([v for _, v in hits]) / asked))
    rates = ticks[HIT_RATE]
    if not rates:
        return None
    times = [t for t in rates if busy.get(t, 0.0) > 0] if busy else list(rates)
    if not times:
        return None
    return sum(sum(rates[t]) / len(rates[t]) for t in times) / len(times)


def _increase(values: Sequence[float]) -> float:
    """A counter's increase over the samples, counting from zero again after each reset."""
    return sum(b - a if b >= a else b for a, b in pairwise(values))


class PrefixReuse:
    """An unbounded prefix tree of prompt segments, fed one prompt at a time.

    A prompt is its segments in order, each ``(key, tokens)``: a key names the segment's content (a shared
    system prompt, a conversation's history so far, one of a trace's block hash ids); the key ``None`` marks
    content no other prompt shares (a request's own text), counted but never remembered, so a million
    single-use tails cost no memory. A segment is reusable
    when the whole chain of keys up to and including it was seen in an earlier prompt, which is what an
    engine's block-hashed prefix cache would find if it never evicted: the same block after a different
    prefix is a different block. Keys are as coarse as the caller makes them; to count the way an engine
    rounds to whole blocks, give block-sized segments.

    Chains are remembered as chained hashes, ``hash((parent, key))``, as engines remember blocks: one int
    per distinct chain, not the chain itself, so memory grows with the distinct chains and nothing else.
    Two distinct chains share a 64-bit hash with odds of about n²/2⁶⁴ over n chains (below 10⁻⁵ at ten
    million), which would count one segment as reusable.
    """

    __slots__ = ("_seen", "reused_tokens", "total_tokens")

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self.reused_tokens = 0
        self.total_tokens = 0

    def add(self, prompt: Iterable[tuple[Hashable, int]]) -> int:
        """Count one prompt, remember its chains, and return how many of its tokens were reusable."""
        seen = self._seen
        chain = 0
        reused = total = 0
        unique = False  # after a segment keyed None nothing can be reused, so nothing is remembered
        for key, tokens in prompt:
            if tokens < 0:
                raise ValueError(f"a prompt segment cannot have {tokens} tokens")
            total += tokens
            unique = unique or key is None
            if unique:
                continue
            chain = hash((chain, key))
            if chain in seen:
                reused += tokens
            else:
                seen.add(chain)
        self.reused_tokens += reused
        self.total_tokens += total
        return reused

    def remember(self, sequence: Iterable[tuple[Hashable, int]]) -> None:
        """Remember chains without counting them: what an engine also caches but nobody sent as a prompt
        (a conversation's answer, generated into the cache and carried by the next turn)."""
        chain = 0
        for key, _ in sequence:
            chain = hash((chain, key))
            self._seen.add(chain)

    @property
    def hit_rate(self) -> float | None:
        """Reusable tokens over all prompt tokens so far; None before any token."""
        return self.reused_tokens / self.total_tokens if self.total_tokens else None


def theoretical_hit_rate(prompts: Iterable[Sequence[tuple[Hashable, int]]]) -> float | None:
    """The share of all prompt tokens an unbounded prefix cache could have served (see :class:`PrefixReuse`).

    Streams: prompts are read once, in order, and only the set of seen chains is kept, so a million-request
    trace costs its distinct chains and not its prompts. None when the prompts hold no tokens.
    """
    tree = PrefixReuse()
    add = tree.add
    for prompt in prompts:
        add(prompt)
    return tree.hit_rate
