"""A block-hashed prefix cache over the engine's KV cache, vLLM v1's automatic prefix caching in miniature.

A sequence's tokens are cut into blocks of ``block_size``; block i is named by a chained hash of block
i-1's name and its own tokens (:func:`block_hashes`), so a name stands for the whole prefix up to and
including the block, and the same tokens after a different prefix are a different block. The cache maps
names to how many running sequences hold the block. Held blocks are shared: however many sequences hold
one, it is in the KV cache once. A block no running sequence holds stays cached but is *free*: it costs
admission nothing and is evicted, least recently freed first, as soon as the KV cache needs its room.

The cache only keeps the books (names, holders, the free order, token counters); the engine
(:class:`servewise.capacity.batching.BatchEngine`) decides what is looked up, held, freed and when the
free blocks must shrink to fit beside what is running.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence


def block_hashes(tokens: Sequence[Hashable], block_size: int, parent: int = 0) -> list[int]:
    """Chained names of the full blocks of ``tokens`` (a trailing partial block has none: it cannot be
    shared until it is full). Any hashable tokens (ids, or the twin's text pieces) will do."""
    names: list[int] = []
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash((parent, tuple(tokens[start : start + block_size])))
        names.append(parent)
    return names


class PrefixCache:
    """Cached blocks, who holds them, and the free ones in eviction order; hit counters in tokens, as
    vLLM v1 counts them (``prefix_cache_queries`` / ``prefix_cache_hits``)."""

    __slots__ = ("_free", "_refs", "block_size", "hits", "queries")

    def __init__(self, block_size: int = 16) -> None:
        if block_size < 1:
            raise ValueError(f"block size must be a positive number of tokens, got {block_size}")
        self.block_size = block_size
        self._refs: dict[int, int] = {}  # every cached block: how many running sequences hold it
        self._free: OrderedDict[int, None] = OrderedDict()  # held by none; the first is evicted first
        self.queries = 0
        self.hits = 0

    @property
    def cached_blocks(self) -> int:
        return len(self._refs)

    @property
    def free_blocks(self) -> int:
        return len(self._free)

    def match(self, blocks: Sequence[int], limit: int) -> tuple[int, int]:
        """How many of the leading ``blocks`` (at most ``limit``) are cached, and how many of those a running
        sequence already holds (they cost a new holder no room)."""
        refs = self._refs
        found = held = 0
        for i in range(min(limit, len(blocks))):
            holders = refs.get(blocks[i])
            if holders is None:
                break
            found += 1
            held += holders > 0
        return found, held

    def acquire(self, blocks: Sequence[int]) -> None:
        """Hold blocks found by :meth:`match` (a free one stops being free)."""
        refs, free = self._refs, self._free
        for block in blocks:
            holders = refs[block]
            if not holders:
                del free[block]
            refs[block] = holders + 1

    def insert(self, block: int) -> bool:
        """Cache a block its sequence has just scheduled and hold it; False if the name is already cached
        (a twin computed at the same time: the sequence keeps its own copy, which is not shared)."""
        if block in self._refs:
            return False
        self._refs[block] = 1
        return True

    def release(self, held: Sequence[int], computed: Sequence[int] = ()) -> int:
        """A sequence lets go of the blocks it held and leaves the full blocks it computed without caching
        them (its generated tokens) as free blocks. Freed in reverse, so a sequence's tail is evicted before
        its head, as vLLM does: a head block is worth more, every later block needs it. Returns how many
        held blocks another sequence still holds."""
        refs, free = self._refs, self._free
        for block in reversed(computed):
            if block not in refs:
                refs[block] = 0
                free[block] = None
        still_held = 0
        for block in reversed(held):
            holders = refs[block] - 1
            refs[block] = holders
            if holders:
                still_held += 1
            else:
                free[block] = None
        return still_held

    def evict(self, keep: int) -> int:
        """Evict the least recently freed blocks until at most ``keep`` are free; returns how many went."""
        refs, free = self._refs, self._free
        evicted = 0
        while len(free) > keep:
            block, _ = free.popitem(last=False)
            del refs[block]
            evicted += 1
        return evicted
