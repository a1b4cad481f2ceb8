"""Pydantic models of a run: target, workload, load, SLOs. Pure data; no I/O."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Api(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    ANTHROPIC = "anthropic"
    RERANK = "rerank"
    IMAGES = "images"
    HTTP = "http"

    @property
    def streams(self) -> bool:
        """Whether the API can stream its answer at all (embeddings, rerank and images answer whole)."""
        return self not in (Api.EMBEDDINGS, Api.RERANK, Api.IMAGES)


class ImageSpec(_Strict):
    """What an image request asks for; ``steps`` only goes out when given (not every server takes it), as a
    ``steps`` field or, for stable-diffusion.cpp's sd-server, inside the prompt the way it reads them."""

    size: str = Field(default="512x512", pattern=r"^\d+x\d+$")
    n: Annotated[int, Field(ge=1, le=16)] = 1
    steps: Annotated[int, Field(ge=1)] | None = None
    steps_as: Literal["field", "sd_cpp_extra_args"] = Field(
        default="field",
        description="how steps reach the server: a top-level steps field, or sd-server's"
        " <sd_cpp_extra_args> in the prompt (it takes no steps field)",
    )


class HttpSpec(_Strict):
    """A generic JSON API: the body is a Jinja template over the request (``prompt``, ``messages``,
    ``max_tokens``, ``model``, ``index``); the answer is read by dotted JSON paths (``choices.0.text``).
    Streamed answers are SSE events read by the same paths, each event with text a content chunk."""

    body: str = Field(description="Jinja template of the JSON body, e.g. {\"inputs\": {{ prompt|tojson }}}")
    text_path: str = Field(description="dotted path to the output text, e.g. generated_text")
    output_tokens_path: str | None = Field(default=None, description="dotted path to the output token count")
    input_tokens_path: str | None = Field(default=None, description="dotted path to the prompt token count")

    @field_validator("body")
    @classmethod
    def _body_renders_json(cls, body: str) -> str:
        """Rendered once here with a sample request, so a broken template is refused before a run."""
        import json

        from jinja2 import Environment, StrictUndefined, TemplateError

        sample = {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "model": "m",
                  "index": 0, "stream": True}  # fmt: skip
        try:
            text = Environment(undefined=StrictUndefined).from_string(body).render(sample)
        except TemplateError as exc:
            raise ValueError(f"the body template does not render: {exc}") from None
        try:
            json.loads(text)
        except ValueError:
            raise ValueError(f"the body template does not render to JSON: {text[:120]!r}") from None
        return body


_SECRET_HEADERS = {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}


class TargetSpec(_Strict):
    """Where to send requests. The API key itself is never part of the spec: only where to find it."""

    url: str = Field(description="Base URL of the server, e.g. http://127.0.0.1:8000")
    api: Api = Api.CHAT
    model: str | None = Field(default=None, description="Model name; default: the first from /v1/models")
    stream: bool = True
    api_key_env: str | None = Field(default=None, description="Environment variable holding the API key")
    api_key_file: str | None = Field(default=None, description="File holding the API key")
    timeout_s: Annotated[float, Field(gt=0)] = 300.0
    ignore_eos: bool = Field(default=True, description="Send ignore_eos so outputs run to max_tokens")
    extra_body: dict[str, object] = Field(default_factory=dict)
    route: str | None = Field(
        default=None, description="Request path, e.g. /rerank (default: the API's own route under /v1/)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers on every request; {session}, {tenant}, {priority} are filled"
        " per request from the workload (a session's id, a trace or dataset line's tenant and priority)"
    )
    anthropic_version: str = "2023-06-01"
    documents: Annotated[int, Field(ge=1)] = Field(
        default=8, description="rerank: documents per request (the prompt split into a query and these)"
    )
    image: ImageSpec = ImageSpec()
    http: HttpSpec | None = None

    def outcome(self) -> tuple[Literal["documents", "images"], int] | None:
        """What one request serves when it is not tokens: (unit, count), for documents/s and images/s."""
        if self.api is Api.RERANK:
            return "documents", self.documents
        if self.api is Api.IMAGES:
            return "images", self.image.n
        return None

    @field_validator("route")
    @classmethod
    def _route_is_a_path(cls, route: str | None) -> str | None:
        if route is not None and not route.startswith("/"):
            raise ValueError(f"must be a path starting with /, got {route!r}")
        return route

    @field_validator("headers")
    @classmethod
    def _headers_are_one_line(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not name or any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
                raise ValueError(f"{name!r}: a header name without ':' or spaces and a one-line value")
            if name.lower() in _SECRET_HEADERS:  # the spec is stored with every run: no key may be in it
                raise ValueError(f"{name!r} carries a secret; give the key with api_key_env or api_key_file")
        return headers

    @model_validator(mode="after")
    def _http_has_template(self) -> TargetSpec:
        if self.api is Api.HTTP and self.http is None:
            raise ValueError("api http needs target.http: a body template and a text_path")
        return self

    @field_validator("url")
    @classmethod
    def _url_has_scheme(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {url!r}")
        return url


class LengthSpec(_Strict):
    """A token-length distribution, sampled with the run's seed."""

    kind: Literal["fixed", "uniform", "normal", "lognormal", "empirical"] = "fixed"
    value: Annotated[int, Field(ge=1)] | None = None
    low: Annotated[int, Field(ge=1)] | None = None
    high: Annotated[int, Field(ge=1)] | None = None
    mean: Annotated[float, Field(gt=0)] | None = None
    std: Annotated[float, Field(ge=0)] | None = None
    values: list[Annotated[int, Field(ge=1)]] | None = None
    min: Annotated[int, Field(ge=1)] = 1
    max: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _params_match_kind(self) -> LengthSpec:
        needed = {
            "fixed": ("value",),
            "uniform": ("low", "high"),
            "normal": ("mean", "std"),
            "lognormal": ("mean", "std"),
            "empirical": ("values",),
        }[self.kind]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} length needs {', '.join(missing)}")
        if self.kind == "uniform" and self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"uniform length: low {self.low} is above high {self.high}")
        if self.kind == "empirical" and not self.values:
            raise ValueError("an empirical length needs at least one value")
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max {self.max} is below min {self.min}")
        return self

    def describe(self) -> str:
        match self.kind:
            case "fixed":
                return str(self.value)
            case "uniform":
                return f"uniform({self.low}..{self.high})"
            case "normal" | "lognormal":
                return f"{self.kind}(mean {self.mean:g}, std {self.std:g})"
            case _:
                return f"empirical({len(self.values or [])} values)"


class DatasetSpec(_Strict):
    """A JSONL file of prompts: each line has ``prompt`` or ``messages``, optionally ``output_tokens``."""

    path: str
    shuffle: bool = True


class SharedPrefixSpec(_Strict):
    """Every conversation (or single-turn prompt) starts with one of ``groups`` shared system prompts."""

    tokens: Annotated[int, Field(ge=1)]
    groups: Annotated[int, Field(ge=1)] = 1


class TraceSpec(_Strict):
    """Replay a trace's arrivals and lengths (Mooncake JSONL, or plain JSONL/CSV)."""

    path: str
    time_scale: Annotated[float, Field(gt=0)] = Field(default=1.0, description="2 replays twice as fast")
    block_size: Annotated[int, Field(ge=1)] = Field(default=512, description="tokens per Mooncake hash id")


class WorkloadSpec(_Strict):
    input_tokens: LengthSpec = LengthSpec(kind="fixed", value=256)
    output_tokens: LengthSpec = LengthSpec(kind="fixed", value=128)
    dataset: DatasetSpec | None = None
    tokenizer: str | None = Field(
        default=None,
        description="Path to a tokenizer.json (or a folder holding one) for exact prompt lengths",
    )
    seed: int = 42
    system_prompt: str | None = None
    shared_prefix: SharedPrefixSpec | None = None
    trace: TraceSpec | None = None


class LoadSpec(_Strict):
    """How requests arrive. Open-loop kinds take a rate; closed-loop takes a concurrency."""

    kind: Literal["constant", "poisson", "gamma", "concurrency", "sweep", "sessions", "trace"] = "poisson"
    rate: Annotated[float, Field(gt=0)] | None = None
    burstiness: Annotated[float, Field(gt=0)] = Field(
        default=1.0, description="gamma shape: 1 is Poisson, below 1 burstier, above 1 smoother"
    )
    concurrency: Annotated[int, Field(ge=1)] | None = None
    max_concurrency: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Cap on requests in flight for open-loop kinds"
    )
    users: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="sessions: users each holding one conversation at a time (closed)"
    )
    turns: LengthSpec | None = Field(default=None, description="sessions: turns per conversation")
    think_s: Annotated[float, Field(ge=0)] = Field(
        default=0.0, description="sessions: pause between an answer's end and the next turn"
    )

    @model_validator(mode="after")
    def _params_match_kind(self) -> LoadSpec:
        if self.kind == "sessions":
            if (self.users is None) == (self.rate is None):
                raise ValueError("sessions load needs users=N (closed) or rate=R (open), not both")
            if self.turns is None:
                raise ValueError("sessions load needs turns=T, e.g. sessions:users=8,turns=4,think=2s")
            return self
        if self.kind in ("constant", "poisson", "gamma") and self.rate is None:
            raise ValueError(f"{self.kind} load needs a rate (requests per second), e.g. {self.kind}:4")
        if self.kind == "concurrency" and self.concurrency is None:
            raise ValueError("concurrency load needs a number of concurrent requests, e.g. concurrency:8")
        return self

    @property
    def paced(self) -> bool:
        """Its sends fall due at set times (arrivals, a trace, a session's think time), so schedule lag says
        whether the client kept up; a closed loop at a fixed concurrency sends on each answer instead."""
        return self.kind != "concurrency"

    def describe(self) -> str:
        match self.kind:
            case "concurrency":
                return f"closed loop, {self.concurrency} concurrent"
            case "sweep":
                return "sweep to the SLO knee"
            case "gamma":
                return f"gamma {self.rate:g} req/s (burstiness {self.burstiness:g})"
            case "sessions":
                who = f"{self.users} users" if self.users else f"{self.rate:g} conversations/s"
                turns = self.turns.describe() if self.turns else "?"
                return f"sessions: {who}, {turns} turns, think {self.think_s:g}s"
            case "trace":
                return "trace replay"
            case _:
                return f"{self.kind} {self.rate:g} req/s"


class SweepSpec(_Strict):
    """Max-rate search: bracket by doubling from ``start_rate``, then bisect to ``precision``."""

    start_rate: Annotated[float, Field(gt=0)] = 1.0
    max_rate: Annotated[float, Field(gt=0)] = 10_000.0
    precision: Annotated[float, Field(gt=0, lt=1)] = 0.1
    step_duration_s: Annotated[float, Field(gt=0)] = 20.0
    max_steps: Annotated[int, Field(ge=2)] = 12


SloMetric = Literal["ttft", "tpot", "itl", "e2e", "errors", "throughput"]
SloStat = Literal["p50", "p90", "p95", "p99", "p99.9", "mean", "max", "rate"]


class SloTarget(_Strict):
    """One SLO: ``stat`` of ``metric`` must be at or under ``limit`` (ms, or a fraction for errors)."""

    metric: SloMetric
    stat: SloStat = "p95"
    limit: float

    @property
    def key(self) -> str:
        return "errors" if self.metric == "errors" else f"{self.metric}_{self.stat}"


class SloSpec(_Strict):
    targets: list[SloTarget] = Field(default_factory=list)

    def per_request(self) -> list[SloTarget]:
        """The latency targets each request can meet or miss on its own (goodput counts these)."""
        return [t for t in self.targets if t.metric in ("ttft", "tpot", "e2e")]


class RunSpec(_Strict):
    """Everything that decides what a run sends. Stored with the run; hashed for like-for-like gates."""

    target: TargetSpec
    workload: WorkloadSpec = WorkloadSpec()
    load: LoadSpec = LoadSpec(kind="poisson", rate=1.0)
    duration_s: Annotated[float, Field(gt=0)] | None = 60.0
    requests: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Stop after this many requests (whichever of duration and requests ends first)",
    )
    warmup_s: Annotated[float, Field(ge=0)] = 0.0
    cooldown_s: Annotated[float, Field(ge=0)] = 0.0
    slo: SloSpec = SloSpec()
    sweep: SweepSpec = SweepSpec()
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    labels: dict[str, str] = Field(default_factory=dict)
    sample_interval_s: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="after")
    def _windows_fit(self) -> RunSpec:
        if self.duration_s is None and self.requests is None and self.load.kind != "trace":
            raise ValueError("give a duration or a number of requests")
        if self.load.kind == "trace" and self.workload.trace is None:
            raise ValueError("a trace load needs workload.trace (--trace FILE)")
        if self.duration_s is not None and self.warmup_s + self.cooldown_s >= self.duration_s:
            raise ValueError(
                f"warm-up ({self.warmup_s:g}s) plus cool-down ({self.cooldown_s:g}s) leave no steady state "
                f"in a {self.duration_s:g}s run"
            )
        return self
