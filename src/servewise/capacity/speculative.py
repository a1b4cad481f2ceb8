"""Speculative decoding (EAGLE, MTP, draft models): each decode step a small draft proposes tokens, the target
model verifies them in one pass and keeps the accepted ones.

What a team knows from its engine is the *acceptance length*: the mean number of tokens one verify step emits
per sequence, the bonus token included (vLLM: 1 + accepted / drafted × ``num_speculative_tokens`` from its
``spec_decode`` counters; SGLang logs ``accept len``; a benchmark's ITL over its TPOT). The planner takes it
as given, because it depends on the data and the draft, not on the GPU.

A step then costs one target pass over ``verify_tokens`` positions per sequence (the weights are read once,
so at small batches it costs about a plain decode step; attention compute grows with the positions, the KV
read does not) plus ``draft_steps`` passes of the draft. A draft pass is priced as a plain decode step of a
model ``draft_share`` the target's size: by default one decoder layer and the LM head over the whole target
(an EAGLE head), the weights it streams.
"""

from __future__ import annotations

from dataclasses import dataclass

from servewise.capacity.errors import CapacityError
from servewise.capacity.models import ModelArch

#: vLLM's common setting: ``num_speculative_tokens`` 3, so 4 positions verified a step, 3 draft passes.
DEFAULT_VERIFY_TOKENS = 4


@dataclass(frozen=True, slots=True)
class Speculation:
    """``acceptance`` tokens emitted per sequence a verify step (1 <= acceptance <= verify_tokens);
    ``verify_tokens`` positions the target checks per sequence (vLLM: num_speculative_tokens + 1; SGLang:
    --speculative-num-draft-tokens); ``draft_steps`` draft passes a step (vLLM: num_speculative_tokens;
    SGLang: --speculative-num-steps); ``draft_share``: a draft pass's cost as a share of a target decode
    step (None: an EAGLE head's, :func:`eagle_share`)."""

    acceptance: float
    verify_tokens: int = DEFAULT_VERIFY_TOKENS
    draft_steps: int | None = None
    draft_share: float | None = None

    def __post_init__(self) -> None:
        if self.verify_tokens < 2:
            raise CapacityError(f"--speculative: tokens must be at least 2, got {self.verify_tokens}")
        if not 1.0 <= self.acceptance <= self.verify_tokens:  # NaN fails too
            raise CapacityError(f"--speculative: the acceptance length must be between 1 and the "
                                f"{self.verify_tokens} tokens verified a step, got {self.acceptance:g}")
        if self.draft_steps is not None and self.draft_steps < 1:
            raise CapacityError(f"--speculative: steps must be at least 1, got {self.draft_steps}")
        if self.draft_share is not None and not 0.0 <= self.draft_share <= 1.0:
            raise CapacityError(f"--speculative: draft must be a share 0..1 of a target step, got "
                                f"{self.draft_share:g}")

    @property
    def passes(self) -> int:
        """Draft passes a step: as given, else one per drafted token (a chain)."""
        return self.draft_steps if self.draft_steps is not None else self.verify_tokens - 1

    def share(self, model: ModelArch) -> float:
        return self.draft_share if self.draft_share is not None else eagle_share(model)

    def virtual_outputs(self, output_tokens: float) -> float:
        """Verify steps a request's output takes, counting its first token (from prefill) as one: the
        simulator runs one step per virtual token and charges each the speculative step's time."""
        return 1.0 + max(output_tokens - 1.0, 0.0) / self.acceptance

    def describe(self, model: ModelArch) -> str:
        return (f"speculative decoding: acceptance length {self.acceptance:g} of {self.verify_tokens} tokens "
                f"verified a step, {self.passes} draft passes at {self.share(model):.0%} of a target step each")


def eagle_share(model: ModelArch) -> float:
    """One decoder layer and the LM head, over the target's weights: what an EAGLE draft pass reads."""
    attention = model.hidden * (model.heads + 2 * model.kv_heads) * model.head_dim + model.heads * model.head_dim * model.hidden
    layer = attention + 3 * model.hidden * model.intermediate * min(model.experts_per_token, model.experts)
    return min(1.0, (layer + model.vocab * model.hidden) / model.params_per_token)


def parse_speculation(text: str) -> Speculation:
    """``2.9`` or ``2.9,tokens=16,steps=4,draft=0.2`` -> a Speculation; bad input is one clear message."""
    head, *options = [part.strip() for part in text.split(",")]
    try:
        acceptance = float(head)
    except ValueError:
        raise CapacityError(f"--speculative: expected the acceptance length first, like 2.9,tokens=4, got "
                            f"{text!r}") from None
    fields: dict[str, float] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("tokens", "steps", "draft") or not value:
            raise CapacityError(f"--speculative: unknown option {option!r} (tokens=N, steps=N, draft=SHARE)")
        try:
            fields[key] = float(value)
        except ValueError:
            raise CapacityError(f"--speculative: {key} must be a number, got {value!r}") from None
    for key in ("tokens", "steps"):
        if key in fields and not float(fields[key]).is_integer():
            raise CapacityError(f"--speculative: {key} must be a whole number, got {fields[key]:g}")
    return Speculation(
        acceptance,
        int(fields.get("tokens", DEFAULT_VERIFY_TOKENS)),
        int(fields["steps"]) if "steps" in fields else None,
        fields.get("draft"),
    )
