"""stage and probe as use cases: probe the endpoint, gather the run history and production traffic, place
the team at a stage and rank the next production layers; keep the result with a run when asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servewise.analysis.stage import (
    AnswersError,
    Capacity,
    HistoryEvidence,
    LatencyHistogram,
    StageAssessment,
    TrafficEvidence,
    assess_stage,
    history_from_runs,
    parse_answers,
    traffic_evidence,
)
from servewise.analysis.stage.traffic import DAY_S
from servewise.errors import UsageError
from servewise.probes import ProbeConfig, ProbeResult, run_probes_sync
from servewise.results import ProbeRecord, StageNote
from servewise.secrets import load_api_key
from servewise.store import RunRow, Store
from servewise.telemetry.promql import PromQLError, fetch_traffic


@dataclass(frozen=True)
class StageOutcome:
    assessment: StageAssessment
    probes: list[ProbeResult]

    @property
    def unreachable(self) -> bool:
        return probes_unreachable(self.probes)

    def note(self) -> StageNote:
        return StageNote(
            stage=self.assessment.record(),
            probes=[ProbeRecord.model_validate(p.to_dict()) for p in self.probes],
        )


def _same_target(run: RunRow, url: str) -> bool:
    """A run of this endpoint: its spec's target (a release file names it as a plain URL) or its target."""
    wanted = url.rstrip("/").removesuffix("/v1")
    target = run.spec.get("target")
    named = target.get("url") if isinstance(target, dict) else target
    found = str(named or run.target.get("url") or "")
    return found.rstrip("/").removesuffix("/v1") == wanted


def read_traffic(prometheus_url: str, days: float, end: float | None = None) -> TrafficEvidence | None:
    """Production traffic over the last ``days`` from the team's Prometheus; None when it holds no known
    engine's request counter."""
    series = fetch_traffic(prometheus_url, span_s=days * DAY_S, end=end)
    if series is None:
        return None
    return traffic_evidence(
        series.volume,
        step_s=series.step_s,
        start=series.start,
        end=series.end,
        errors=series.errors,
        size=series.size,
        latency=[LatencyHistogram(metric, tuple(buckets)) for metric, buckets in series.histograms],
        source=series.source,
    )


def build_history(
    store: Store, target_url: str | None, traffic: TrafficEvidence | None = None
) -> HistoryEvidence:
    """Evidence from every stored run (of this target, when one is given)."""
    runs = store.list_runs(include_children=False)
    if target_url:
        runs = [r for r in runs if _same_target(r, target_url)]
    return history_from_runs(runs, traffic=traffic)


def load_answers(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    try:
        return dict(parse_answers(path.read_text()))
    except OSError as exc:
        raise UsageError(f"cannot read the answers file {path}: {exc.strerror}") from None
    except AnswersError as exc:
        raise UsageError(f"{path}: {exc}") from None


def probe_config(
    api_key_env: str | None, api_key_file: str | None, burst: int, timeout_s: float, model: str | None = None
) -> ProbeConfig:
    try:
        key = load_api_key(api_key_env, api_key_file)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ProbeConfig(
        model=model,
        api_key=key,
        request_timeout_s=timeout_s,
        burst_size=max(burst, 1),
        include_overload=burst > 0,
    )


def probe(url: str, config: ProbeConfig) -> list[ProbeResult]:
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"URL must start with http:// or https://, got {url!r}")
    return run_probes_sync(url, config)


def assess(
    store: Store,
    *,
    url: str | None,
    answers_path: Path | None,
    config: ProbeConfig,
    prometheus_url: str | None = None,
    days: float = 28.0,
    capacity_rps: float | None = None,
    replicas: int = 1,
    now: float | None = None,
    warn: Callable[[str], None] | None = None,
) -> StageOutcome:
    """Everything `servewise stage` does before printing; doctor calls this too. ``capacity_rps`` (per
    replica) replaces the stored sweep's knee; ``now`` (tests) dates the traffic window's end."""
    answers = load_answers(answers_path)
    probes = run_probes_sync(url, config) if url else []
    traffic, note = None, None
    if prometheus_url:
        try:
            traffic = read_traffic(prometheus_url, days, end=now)
        except PromQLError as exc:
            note = f"{exc}; assessed without production traffic"
        else:
            if traffic is None:
                note = (
                    f"no production traffic in Prometheus at {prometheus_url} over {days:g} days (no vLLM, SGLang, "
                    "TGI or servewise request counter holds data): nothing is guessed from it"
                )
        if note and warn:
            warn(note)
    history = build_history(store, url, traffic)
    capacity = Capacity(capacity_rps, replicas, "--capacity") if capacity_rps else None
    assessment = assess_stage(
        probes, history, answers, capacity=capacity, replicas=replicas, now=now, traffic_note=note
    )
    return StageOutcome(assessment, probes)


def attach(store: Store, run_id: str, outcome: StageOutcome) -> None:
    """Keep the stage and probes with a run so `servewise report RUN` shows them."""
    store.annotate(store.get_run(run_id).id, outcome.note())


def probes_unreachable(probes: Sequence[ProbeResult]) -> bool:
    """Every probe found nothing answering: the target is down, not unready."""
    return bool(probes) and all(p.facts.get("unreachable") for p in probes)
