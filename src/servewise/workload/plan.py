"""The requests of a run, request by request, the same for every run with the same seed.

Lengths and prompt offsets are drawn in blocks of 4096 from generators seeded by (seed, block), so any
worker process can build request i on its own, in any order, without the parent shipping bodies around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from servewise.spec.models import WorkloadSpec
from servewise.workload.dataset import DatasetEntry, load_dataset
from servewise.workload.lengths import sample_lengths
from servewise.workload.prompts import PromptSynthesizer

BLOCK = 4096


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    index: int
    prompt: str | None
    messages: list[dict[str, str]] | None
    input_tokens: int | None
    max_tokens: int


class WorkloadPlan:
    """Builds request ``i`` of the run on demand."""

    def __init__(self, workload: WorkloadSpec) -> None:
        self.workload = workload
        self._dataset: list[DatasetEntry] | None = None
        self._synth: PromptSynthesizer | None = None
        if workload.dataset is not None:
            self._dataset = load_dataset(workload.dataset.path)
        else:
            self._synth = PromptSynthesizer(workload.seed, workload.tokenizer)
        self._block_index = -1
        self._block: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.empty(0), np.empty(0), np.empty(0))

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

    def request(self, index: int) -> PlannedRequest:
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
            )
        assert self._synth is not None
        tokens = int(inputs[slot])
        return PlannedRequest(
            index=index,
            prompt=self._synth.prompt(tokens, int(picks[slot])),
            messages=None,
            input_tokens=tokens,
            max_tokens=int(outputs[slot]),
        )
