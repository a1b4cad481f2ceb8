"""`servewise stage` and `servewise probe`: where the team stands, and how the endpoint behaves when pushed.

stage: exit 0 assessed, 2 usage (bad answers file, bad flags), 3 target unreachable.
probe: exit 0 every probe passed or unknown, 1 a probe failed, 2 usage, 3 target unreachable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from servewise.analysis.stage import (
    AnswersError,
    HistoryEvidence,
    StageAssessment,
    TrafficPattern,
    answers_template,
    assess_stage,
    history_from_runs,
    parse_answers,
    traffic_pattern_from_series,
)
from servewise.probes import ProbeConfig, ProbeResult, ProbeStatus, run_probes_sync
from servewise.secrets import load_api_key
from servewise.store import RunStore, StoreError
from servewise.telemetry.promql import PromQLError, fetch_traffic

_STORE_HELP = "Run store (default: $SERVEWISE_STORE or ~/.local/share/servewise/runs.db)."
STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "unknown": "yellow"}
DAY_S = 86400.0


class StageUsageError(ValueError):
    """Bad input the user can fix: one line, exit 2."""


def _same_target(run: Any, url: str) -> bool:
    wanted = url.rstrip("/").removesuffix("/v1")
    found = str(((run.spec or {}).get("target") or {}).get("url") or (run.target or {}).get("url") or "")
    return found.rstrip("/").removesuffix("/v1") == wanted


def read_traffic(prometheus_url: str, days: float, period_s: float = DAY_S) -> TrafficPattern | None:
    """Daily volume and request-size pattern over ``days`` from the team's Prometheus (hourly points)."""
    series = fetch_traffic(prometheus_url, span_s=days * DAY_S, step_s=min(3600.0, period_s / 4), window="1h")
    if series is None:
        return None
    return traffic_pattern_from_series(series.volume, series.size, period_s=period_s, source=series.source)


def build_history(
    store: RunStore, target_url: str | None, traffic: TrafficPattern | None = None
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
        raise StageUsageError(f"cannot read the answers file {path}: {exc.strerror}") from None
    except AnswersError as exc:
        raise StageUsageError(f"{path}: {exc}") from None


def probe_config(
    api_key_env: str | None, api_key_file: str | None, burst: int, timeout_s: float, model: str | None = None
) -> ProbeConfig:
    try:
        key = load_api_key(api_key_env, api_key_file)
    except ValueError as exc:
        raise StageUsageError(str(exc)) from None
    return ProbeConfig(
        model=model,
        api_key=key,
        request_timeout_s=timeout_s,
        burst_size=max(burst, 1),
        include_overload=burst > 0,
    )


def unreachable(probes: Sequence[ProbeResult]) -> bool:
    return bool(probes) and all(p.facts.get("unreachable") for p in probes)


def probes_table(probes: Sequence[ProbeResult]) -> Table:
    table = Table(title="Readiness probes", title_justify="left")
    for column in ("probe", "status", "evidence"):
        table.add_column(column, overflow="fold")
    for p in probes:
        table.add_row(p.name, Text(p.status.value, STATUS_STYLE[p.status.value]), Text(p.evidence))
    return table


def render_assessment(assessment: StageAssessment) -> Group:
    """Rich renderable; every server-derived string goes in as Text, never as markup."""
    parts: list[Any] = [Text.assemble(("Stage: ", "bold"), (assessment.stage.label, "bold cyan"))]
    parts += [Text(f"  • {reason}") for reason in assessment.reasons]
    parts.append(Text.assemble(("Optimize for: ", "bold"), assessment.optimize_for))
    parts.append(Text.assemble(("Do not overdo: ", "bold"), assessment.do_not_overdo))
    table = Table(title="Readiness checklist", title_justify="left")
    for column in ("area", "item", "status", "evidence", "matters from"):
        table.add_column(column, overflow="fold")
    for item in assessment.checklist:
        table.add_row(
            item.area,
            item.title,
            Text(item.status, STATUS_STYLE[item.status]),
            Text(item.evidence),
            item.needed_from.label,
        )
    parts.append(table)
    if assessment.next_layers:
        parts.append(Text("Next production layers, ranked by the evidence", style="bold"))
        for rank, layer in enumerate(assessment.next_layers, 1):
            parts.append(Text.assemble(f"  {rank}. ", (layer.title, "bold"), f": {layer.action}"))
            parts += [Text(f"       - {why}", style="dim") for why in layer.why]
    if assessment.not_yet:
        later = "; ".join(f"{x.title} (from {x.needed_from.label})" for x in assessment.not_yet)
        parts.append(Text.assemble(("Not yet (would be overbuilding): ", "bold"), later))
    return Group(*parts)


def assess(
    store: RunStore,
    *,
    url: str | None,
    answers_path: Path | None,
    config: ProbeConfig,
    prometheus_url: str | None = None,
    days: float = 14.0,
    warn: Console | None = None,
) -> tuple[StageAssessment, list[ProbeResult]]:
    """Everything `servewise stage` does before printing; doctor calls this too."""
    answers = load_answers(answers_path)
    probes = run_probes_sync(url, config) if url else []
    traffic = None
    if prometheus_url:
        try:
            traffic = read_traffic(prometheus_url, days)
        except PromQLError as exc:
            if warn:
                warn.print(Text.assemble(("warning: ", "bold yellow"), f"{exc}; assessing without traffic"))
        if traffic is None and warn:
            warn.print(
                Text("warning: no known request-volume series in Prometheus; assessing without traffic")
            )
    history = build_history(store, url, traffic)
    return assess_stage(probes, history, answers), probes


def attach(
    store: RunStore, run_id: str, assessment: Mapping[str, Any], probes: Sequence[ProbeResult]
) -> None:
    """Keep the stage and probes with a run so `servewise report RUN` shows them."""
    run = store.get_run(run_id)
    summary = dict(run.summary or {})
    summary["stage"] = dict(assessment)
    if probes:
        summary["probes"] = [p.to_dict() for p in probes]
    store.update_summary(run.id, summary)


def register(app: typer.Typer) -> None:
    @app.command("stage")
    def stage_command(
        url: Annotated[
            str | None, typer.Argument(help="Endpoint to probe (optional), e.g. http://127.0.0.1:8000")
        ] = None,
        answers: Annotated[
            Path | None, typer.Option("--answers", help="YAML answers file: KEY: yes|no|unknown")
        ] = None,
        init_answers: Annotated[
            Path | None, typer.Option("--init-answers", help="Write an answers file to fill in, then exit")
        ] = None,
        prometheus: Annotated[
            str | None, typer.Option("--prometheus", help="Prometheus URL for the production traffic pattern")
        ] = None,
        days: Annotated[
            float, typer.Option("--days", min=1, help="Days of traffic to read from Prometheus")
        ] = 14,
        api_key_env: Annotated[
            str | None, typer.Option("--api-key-env", help="Env var holding the API key")
        ] = None,
        api_key_file: Annotated[
            str | None, typer.Option("--api-key-file", help="File holding the API key")
        ] = None,
        burst: Annotated[
            int, typer.Option("--burst", min=0, max=256, help="Overload burst size (0 skips)")
        ] = 32,
        timeout_s: Annotated[
            float, typer.Option("--timeout", min=0.5, help="Per-request probe timeout (s)")
        ] = 10,
        attach_to: Annotated[
            str | None, typer.Option("--attach", help="Store the result with this run (shown by `report`)")
        ] = None,
        store_path: Annotated[Path | None, typer.Option("--store", help=_STORE_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the assessment as JSON")] = False,
    ) -> None:
        """Place the team at a stage (prototype → mature production) and rank the next production layers."""
        err = Console(stderr=True)
        if init_answers is not None:
            if init_answers.exists():
                err.print(Text(f"error: {init_answers} exists; not overwriting", style="bold red"))
                raise typer.Exit(2)
            init_answers.write_text(answers_template())
            typer.echo(f"wrote {init_answers}: answer each question yes, no or unknown")
            return
        try:
            config = probe_config(api_key_env, api_key_file, burst, timeout_s)
            with RunStore(store_path) as store:
                assessment, probes = assess(
                    store,
                    url=url,
                    answers_path=answers,
                    config=config,
                    prometheus_url=prometheus,
                    days=days,
                    warn=err,
                )
                if unreachable(probes):
                    err.print(Text(f"error: {probes[0].evidence}", style="bold red"))
                    raise typer.Exit(3)
                if attach_to:
                    attach(store, attach_to, assessment.to_dict(), probes)
        except (StageUsageError, StoreError) as exc:
            err.print(Text.assemble(("error: ", "bold red"), str(exc)))
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(
                json.dumps({**assessment.to_dict(), "probes": [p.to_dict() for p in probes]}, indent=2)
            )
            return
        console = Console()
        if probes:
            console.print(probes_table(probes))
        console.print(render_assessment(assessment))

    @app.command("probe")
    def probe_command(
        url: Annotated[str, typer.Argument(help="Endpoint to probe, e.g. http://127.0.0.1:8000")],
        model: Annotated[
            str | None, typer.Option("--model", help="Model name (default: first listed)")
        ] = None,
        api_key_env: Annotated[
            str | None, typer.Option("--api-key-env", help="Env var holding the API key")
        ] = None,
        api_key_file: Annotated[
            str | None, typer.Option("--api-key-file", help="File holding the API key")
        ] = None,
        burst: Annotated[
            int, typer.Option("--burst", min=0, max=256, help="Overload burst size (0 skips)")
        ] = 32,
        timeout_s: Annotated[float, typer.Option("--timeout", min=0.5, help="Per-request timeout (s)")] = 10,
        as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON")] = False,
    ) -> None:
        """Readiness probes: health vs ready, /metrics, streaming, usage, bad input, overload, auth, version."""
        err = Console(stderr=True)
        if not url.startswith(("http://", "https://")):
            err.print(Text(f"error: URL must start with http:// or https://, got {url!r}", style="bold red"))
            raise typer.Exit(2)
        try:
            results = run_probes_sync(url, probe_config(api_key_env, api_key_file, burst, timeout_s, model))
        except StageUsageError as exc:
            err.print(Text.assemble(("error: ", "bold red"), str(exc)))
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        else:
            Console().print(probes_table(results))
        if unreachable(results):
            raise typer.Exit(3)
        if any(r.status is ProbeStatus.FAIL for r in results):
            raise typer.Exit(1)
