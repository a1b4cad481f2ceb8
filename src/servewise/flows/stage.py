"""stage and probe as use cases: probe the endpoint, gather the run history and production traffic, place
the team at a stage and rank the next production layers; keep the result with a run when asked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from servewise.analysis.stage import (
    AnswersError,
    HistoryEvidence,
    StageAssessment,
    TrafficPattern,
    assess_stage,
    history_from_runs,
    parse_answers,
    traffic_pattern_from_series,
)
from servewise.errors import UsageError
from servewise.probes import ProbeConfig, ProbeResult, run_probes_sync
from servewise.results import ProbeRecord, StageNote
from servewise.secrets import load_api_key
from servewise.store import RunRow, RunStore
from servewise.telemetry.promql import PromQLError, fetch_traffic

DAY_S = 86400.0


@dataclass(frozen=True)
class StageOutcome:
    assessment: StageAssessment
    probes: list[ProbeResult]

    @property
    def unreachable(self) -> bool:
        return probes_unreachable(self.probes)

    def note(self) -> StageNote:
        return StageNote(
            stage=self.assessment.record(), probes=[ProbeRecord.model_validate(p.to_dict()) for p in self.probes]
        )


def _same_target(run: RunRow, url: str) -> bool:
    wanted = url.rstrip("/").removesuffix("/v1")
    found = str((run.spec.get("target") or {}).get("url") or run.target.get("url") or "")
    return found.rstrip("/").removesuffix("/v1") == wanted


def read_traffic(prometheus_url: str, days: float, period_s: float = DAY_S) -> TrafficPattern | None:
    """Daily volume and request-size pattern over ``days`` from the team's Prometheus (hourly points)."""
    series = fetch_traffic(prometheus_url, span_s=days * DAY_S, step_s=min(3600.0, period_s / 4), window="1h")
    if series is None:
        return None
    return traffic_pattern_from_series(series.volume, series.size, period_s=period_s, source=series.source)


def build_history(store: RunStore, target_url: str | None, traffic: TrafficPattern | None = None) -> HistoryEvidence:
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
    store: RunStore,
    *,
    url: str | None,
    answers_path: Path | None,
    config: ProbeConfig,
    prometheus_url: str | None = None,
    days: float = 14.0,
    warn: Callable[[str], None] | None = None,
) -> StageOutcome:
    """Everything `servewise stage` does before printing; doctor calls this too."""
    answers = load_answers(answers_path)
    probes = run_probes_sync(url, config) if url else []
    traffic = None
    if prometheus_url:
        try:
            traffic = read_traffic(prometheus_url, days)
        except PromQLError as exc:
            if warn:
                warn(f"{exc}; assessing without traffic")
        if traffic is None and warn:
            warn("no known request-volume series in Prometheus; assessing without traffic")
    history = build_history(store, url, traffic)
    return StageOutcome(assess_stage(probes, history, answers), probes)


def attach(store: RunStore, run_id: str, outcome: StageOutcome) -> None:
    """Keep the stage and probes with a run so `servewise report RUN` shows them."""
    store.annotate(store.get_run(run_id).id, outcome.note())


def probes_unreachable(probes: Sequence[ProbeResult]) -> bool:
    """Every probe found nothing answering: the target is down, not unready."""
    return bool(probes) and all(p.facts.get("unreachable") for p in probes)
