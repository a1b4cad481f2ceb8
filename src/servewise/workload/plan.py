"""The requests of a run, request by request, the same for every run with the same seed.

Lengths and prompt offsets are drawn in blocks of 4096 from generators seeded by (seed, block), so any
worker process can build request i on its own, in any order, without the parent shipping bodies around.
With a shared prefix, request i starts with prefix ``i % groups`` (a system message on the chat API).
A conversation's turns are drawn from (seed, conversation, turn) alone, so any worker can hold any
conversation; only the assistant's answers come from the live server.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from servewise.records import RequestRecord
from servewise.spec.models import LengthSpec, WorkloadSpec
from servewise.workload.dataset import DatasetEntry, load_dataset
from servewise.workload.keyed_random import KeyedRandom
from servewise.workload.lengths import sample_lengths
from servewise.workload.prompts import PromptSynthesizer
from servewise.workload.trace import Trace, load_trace, trace_prompt, trace_segments

BLOCK = 4096
TURN_BLOCK = 8  # a conversation's turns are drawn this many at a time
_TURN_BLOCKS_KEPT = 4096
_PREFIX_OFFSET = 1_000_003  # prefixes are cut far from where per-request text starts, seeded apart
Segment = tuple[Hashable, int]


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    index: int
    prompt: str | None
    messages: list[dict[str, str]] | None
    input_tokens: int | None
    max_tokens: int
    session: int | None = None  # what per-request headers carry (session affinity, tenant, priority)
    tenant: str | None = None
    priority: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One user turn of a conversation: the new message and how long an answer it asks for."""

    text: str
    tokens: int
    max_tokens: int


class WorkloadPlan:
    """Builds request ``i`` of the run on demand."""

    def __init__(self, workload: WorkloadSpec) -> None:
        self.workload = workload
        self._dataset: list[DatasetEntry] | None = None
        self._synth: PromptSynthesizer | None = None
        self.trace: Trace | None = None
        if workload.dataset is not None:
            self._dataset = load_dataset(workload.dataset.path)
        else:
            self._synth = PromptSynthesizer(workload.seed, workload.tokenizer)
        if workload.trace is not None:
            spec = workload.trace
            self.trace = load_trace(spec.path, time_scale=spec.time_scale, block_size=spec.block_size)
        self._block_index = -1
        self._block: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.empty(0), np.empty(0), np.empty(0))
        self._prefixes: dict[int, str] = {}
        self._turn_blocks: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        self._keyed = KeyedRandom()

    @property
    def exact_prompt_lengths(self) -> bool:
        return self._synth is not None and self._synth.exact

    @property
    def synthesizer(self) -> PromptSynthesizer | None:
        return self._synth

    def _lengths_block(self, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if block != self._block_index:
            rng = np.random.default_rng([self.workload.seed, block])
            inputs = sample_lengths(self.workload.input_tokens, BLOCK, rng)
            outputs = sample_lengths(self.workload.output_tokens, BLOCK, rng)
            span = len(self._dataset) if self._dataset is not None else 2**31 - 1
            picks = rng.integers(0, span, size=BLOCK)
            if self._dataset is not None and self.workload.dataset and not self.workload.dataset.shuffle:
                picks = np.arange(block * BLOCK, (block + 1) * BLOCK) % span
            self._block = (inputs, outputs, picks)
            self._block_index = block
        return self._block

    def trace_offsets(self) -> np.ndarray:
        assert self.trace is not None, "a trace load needs workload.trace"
        return self.trace.offsets_s

    def request(self, index: int) -> PlannedRequest:
        if self.trace is not None:
            assert self._synth is not None
            return PlannedRequest(
                index=index,
                prompt=trace_prompt(self._synth, self.trace, index),
                messages=None,
                input_tokens=int(self.trace.input_tokens[index]),
                max_tokens=int(self.trace.output_tokens[index]),
                session=self.trace.session_id(index),
                tenant=self.trace.tenant(index),
                priority=self.trace.priority(index),
            )
        inputs, outputs, picks = self._lengths_block(index // BLOCK)
        slot = index % BLOCK
        if self._dataset is not None:
            entry = self._dataset[int(picks[slot])]
            return PlannedRequest(
                index=index,
                prompt=entry.prompt,
                messages=entry.messages,
                input_tokens=None,
                max_tokens=entry.output_tokens or int(outputs[slot]),
                tenant=entry.tenant,
                priority=entry.priority,
            )
        assert self._synth is not None
        tokens = int(inputs[slot])
        text = self._synth.prompt(tokens, int(picks[slot]))
        shared = self.workload.shared_prefix
        if shared is None:
            return PlannedRequest(
                index=index, prompt=text, messages=None, input_tokens=tokens, max_tokens=int(outputs[slot])
            )
        group = index % shared.groups
        return PlannedRequest(
            index=index,
            prompt=None,
            messages=[self.system_message(group), {"role": "user", "content": text}],
            input_tokens=shared.tokens + tokens,
            max_tokens=int(outputs[slot]),
        )

    def prefix(self, group: int) -> str:
        """Shared prefix ``group``: the same text in every request (and every worker) that starts with it."""
        assert self._synth is not None and self.workload.shared_prefix is not None
        if group not in self._prefixes:
            tokens = self.workload.shared_prefix.tokens
            self._prefixes[group] = self._synth.prompt(tokens, _PREFIX_OFFSET + group * (tokens + 1))
        return self._prefixes[group]

    def system_message(self, group: int) -> dict[str, str]:
        return {"role": "system", "content": self.prefix(group)}

    def segments(self, index: int) -> list[Segment]:
        """Request ``index``'s prompt as (key, tokens) parts, for the share a prefix cache could reuse."""
        if self.trace is not None:
            return trace_segments(self.trace, index)
        if self._dataset is not None:
            return []  # a dataset's prompt lengths are known only to the server
        own = int(self._lengths_block(index // BLOCK)[0][index % BLOCK])
        shared = self.workload.shared_prefix
        if shared is None:
            return [(None, own)]  # a request's own text: no other request shares it
        return [(("prefix", index % shared.groups), shared.tokens), (None, own)]

    def sent_segments(
        self, records: Iterable[RequestRecord]
    ) -> Iterator[tuple[list[Segment], list[Segment] | None]]:
        """Every sent request's prompt as segments, with what its answer left in an engine's cache (a
        conversation's answer is generated into the cache and carried by the next turn; None elsewhere).
        Turn k of a conversation is its prefix, turns 1..k-1 with the server's answers (their lengths from
        the records), then the new message."""
        conversations: dict[int, list[RequestRecord]] = {}
        for record in records:
            if record.session is None or record.turn is None or self.trace is not None:
                yield self.segments(record.index), None
            else:
                conversations.setdefault(record.session, []).append(record)
        for conversation, sent in conversations.items():
            chain = self._opening_segments(conversation)
            for record in sorted(sent, key=lambda r: r.turn or 0):
                turn = record.turn or 0
                prompt = [*chain, (("user", conversation, turn), self.turn(conversation, turn).tokens)]
                chain = [*prompt, (("answer", conversation, turn), record.output_tokens or 0)]
                yield prompt, chain if record.ok else None

    def _opening_segments(self, conversation: int) -> list[Segment]:
        shared = self.workload.shared_prefix
        entry = self._conversation_entry(conversation)
        if entry is not None:
            return [(("system", entry.system), len(entry.system.split()))] if entry.system else []
        group = self.conversation_group(conversation)
        return [] if shared is None or group is None else [(("prefix", group), shared.tokens)]

    # -- conversations ------------------------------------------------------------------------------

    def _conversation_entry(self, conversation: int) -> DatasetEntry | None:
        """A dataset's conversation ``c`` is its line ``c`` (wrapping), so every worker replays the same one."""
        return self._dataset[conversation % len(self._dataset)] if self._dataset else None

    def conversation_turns(self, conversation: int, turns: LengthSpec) -> int:
        """Drawn from ``turns``; a dataset's conversation has its own turns, which ``turns`` caps."""
        rng = self._keyed.at(self.workload.seed, 3, conversation)
        drawn = max(1, int(sample_lengths(turns, 1, rng)[0]))
        entry = self._conversation_entry(conversation)
        return drawn if entry is None else max(1, min(drawn, len(entry.user_turns)))

    def conversation_group(self, conversation: int) -> int | None:
        shared = self.workload.shared_prefix
        return None if shared is None else conversation % shared.groups

    def opening(self, conversation: int) -> list[dict[str, str]]:
        """The messages a conversation starts with: its shared prefix, or a dataset line's system message."""
        entry = self._conversation_entry(conversation)
        if entry is not None:
            return [{"role": "system", "content": entry.system}] if entry.system else []
        group = self.conversation_group(conversation)
        return [] if group is None else [self.system_message(group)]

    def turn(self, conversation: int, turn: int) -> Turn:
        """The user's message at ``turn`` (1-based) of ``conversation``: seeded (or the dataset's own),
        independent of the server."""
        max_tokens, tokens, offset = self._turn_draws(conversation, turn)
        entry = self._conversation_entry(conversation)
        if entry is not None:
            text = entry.user_turns[min(turn, len(entry.user_turns)) - 1]
            answer = entry.answer_tokens[turn - 1] if turn <= len(entry.answer_tokens) else None
            return Turn(text, max(1, len(text.split())), answer or max_tokens)
        assert self._synth is not None
        return Turn(self._synth.prompt(tokens, offset), tokens, max_tokens)

    def _turn_draws(self, conversation: int, turn: int) -> tuple[int, int, int]:
        """(answer length, message length, text offset) of a turn, drawn TURN_BLOCK turns at a time, keyed
        by (seed, conversation, block); the blocks of the conversations in flight are kept."""
        key = (conversation, (turn - 1) // TURN_BLOCK)
        draws = self._turn_blocks.get(key)
        if draws is None:
            if len(self._turn_blocks) >= _TURN_BLOCKS_KEPT:
                self._turn_blocks.clear()
            rng = self._keyed.at(self.workload.seed, 5, *key)
            outputs = sample_lengths(self.workload.output_tokens, TURN_BLOCK, rng).tolist()
            inputs = sample_lengths(self.workload.input_tokens, TURN_BLOCK, rng).tolist()
            offsets = rng.integers(0, 2**31 - 1, size=TURN_BLOCK).tolist()
            draws = self._turn_blocks[key] = list(zip(outputs, inputs, offsets, strict=True))
        return draws[(turn - 1) % TURN_BLOCK]
