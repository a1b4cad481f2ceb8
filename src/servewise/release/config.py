"""The release file: where the release answers, the team's own deploy and rollback commands, the bench and
the gate. Read and checked in full before anything is deployed, every problem as one line naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from servewise.analysis.gate import GatePolicy
from servewise.analysis.gate_options import build_policy, build_slo
from servewise.errors import UsageError
from servewise.protocols.endpoint import health_url, origin
from servewise.spec import RunSpec, SloSpec, load_spec_file, parse_duration

PLACEHOLDERS = ("version", "previous")
_PLACEHOLDER = re.compile(r"(?<!\$)\{([^{}]*)\}")  # {name}, but not the shell's ${NAME}
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@/-]*$")

EXAMPLE = """\
target: http://127.0.0.1:8080            # where the release serves (the bench and probes go here)
ready: http://127.0.0.1:8080/health      # answers 200 once it is up (default: TARGET/health)
deploy: ./deploy.sh start {version}      # brings {version} up in place of {previous}
rollback: ./deploy.sh start {previous}   # brings {previous} back in place of {version}
bench:                                   # a run spec, as `servewise bench --spec` reads it, minus target.url
  load: {kind: concurrency, concurrency: 4}
  requests: 200
  duration_s: null
  workload:
    input_tokens: {kind: fixed, value: 256}
    output_tokens: {kind: fixed, value: 64}
check_requests: 50                       # the short bench that confirms a rolled-back release
probes: true                             # the readiness probes (no overload burst), after ready
gate:
  max_regression: ttft_p95=10%,throughput=-5%
  slo: ttft_p95=2s,errors=1%
  on_inconclusive: keep                  # keep | rollback
timeouts: {deploy: 120s, ready: 300s, bench: 600s, rollback: 120s}
"""


def _seconds(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Bounds of each step; a step that overruns is stopped and counts as failed."""

    deploy: Seconds = 120.0
    ready: Seconds = 300.0  # from the deploy (or rollback) command's end to ready and a first token
    bench: Seconds = 600.0  # the bench, and the rolled-back release's check bench
    rollback: Seconds = 120.0


class GateSection(_Strict):
    """The gate's policy as `servewise gate` takes it. One run a side: the two releases are never up
    together, so there are no interleaved repeats."""

    max_regression: str | None = None
    slo: str | None = None
    confidence: float = 0.95
    between_run: float | None = None
    on_inconclusive: Literal["keep", "rollback"] = "keep"


class ReleaseFile(_Strict):
    target: str
    ready: str
    deploy: str
    rollback: str
    bench: RunSpec
    check_requests: Annotated[int, Field(ge=1)] = 50
    probes: bool = True
    gate: GateSection = GateSection()
    timeouts: Timeouts = Timeouts()

    @field_validator("deploy", "rollback")
    @classmethod
    def _known_placeholders(cls, command: str) -> str:
        if not command.strip():
            raise ValueError("is empty: give the shell command that does it")
        unknown = [name for name in _PLACEHOLDER.findall(command) if name not in PLACEHOLDERS]
        if unknown:
            raise ValueError(f"unknown placeholder {{{unknown[0]}}}: use {{version}} or {{previous}}")
        return command

    def policy(self) -> GatePolicy:
        return build_policy(self.gate.max_regression, self.gate.confidence, self.gate.between_run)

    def slo(self) -> SloSpec | None:
        return build_slo(self.gate.slo)


def fill(command: str, version: str, previous: str | None) -> str:
    """``{version}`` and ``{previous}`` filled in (versions are checked shell-safe); ``$VAR`` is left to the
    shell, so no environment value is ever part of the stored command."""
    values = {"version": version, "previous": previous or ""}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], command)


def check_version(value: str, flag: str) -> str:
    """Versions go into shell commands: letters, digits and ``._:+@/-`` only."""
    if not _VERSION.match(value):
        raise UsageError(f"{flag} {value!r}: use letters, digits and . _ : + @ / - (not starting with -)")
    return value


def _url(value: Any, field: str, source: str) -> str:
    try:
        origin(str(value))
    except ValueError:
        raise UsageError(f"{source}: {field}: not an http(s) URL: {value!r}") from None
    return str(value)


def _one_line(exc: ValidationError, source: str) -> str:
    first, *rest = exc.errors()
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {len(rest)} more problem{'s' if len(rest) > 1 else ''})" if rest else ""
    return f"{source}: {where}: {first['msg']}{more}"


def _bench_section(data: dict[str, Any], target: str, source: str) -> dict[str, Any]:
    bench = data.get("bench")
    if not isinstance(bench, dict):
        raise UsageError(f"{source}: bench: give a run spec (load, requests or duration_s, workload), "
                         "as `servewise bench --spec` reads")  # fmt: skip
    spec_target = bench.get("target") or {}
    if not isinstance(spec_target, dict):
        raise UsageError(f"{source}: bench.target: a mapping (api, model, api_key_env), without url")
    if spec_target.get("url") not in (None, target):
        raise UsageError(f"{source}: bench.target.url: leave it out; the release's target ({target}) is benched")
    if spec_target.get("api") == "embeddings":
        raise UsageError(f"{source}: bench.target.api: a release is timed to its first streamed token; "
                         "use chat or completions")  # fmt: skip
    load = bench.get("load")
    if isinstance(load, dict) and load.get("kind") == "sweep":
        raise UsageError(f"{source}: bench.load: a sweep has no single run to gate; use a fixed load")
    return bench | {"target": spec_target | {"url": target}}


def parse_release(data: dict[str, Any], source: str) -> ReleaseFile:
    """The release file's mapping, checked in full; the gate's policy and SLO are parsed here too."""
    if "target" not in data:
        raise UsageError(f"{source}: target: the release's base URL is missing (e.g. http://127.0.0.1:8080)")
    target = _url(data["target"], "target", source)
    ready = _url(data.get("ready") or health_url(target), "ready", source)
    if isinstance(data.get("gate"), dict) and "repeats" in data["gate"]:
        raise UsageError(f"{source}: gate.repeats: a release gates one run a side (the two releases are "
                         "never up together); leave it out")  # fmt: skip
    try:
        release = ReleaseFile.model_validate(data | {"target": target, "ready": ready,
                                                     "bench": _bench_section(data, target, source)})
    except ValidationError as exc:
        raise UsageError(_one_line(exc, source)) from None
    try:
        release.policy(), release.slo()
    except UsageError as exc:
        raise UsageError(f"{source}: gate: {str(exc).removeprefix('--')}") from None
    return release


def load_release_file(path: Path) -> ReleaseFile:
    return parse_release(load_spec_file(path), str(path))
