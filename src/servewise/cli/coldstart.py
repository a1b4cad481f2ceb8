"""``servewise coldstart``: launch a server N times (or attach to one) and time every startup phase."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from servewise.coldstart import (
    ColdstartConfig,
    Endpoint,
    parse_user_phase,
)
from servewise.errors import EXIT_INTERRUPTED
from servewise.flows.coldstart import run_coldstart
from servewise.protocols.endpoint import health_url, origin
from servewise.report.coldstart import progress_text, run_table, summary_view
from servewise.report.export import write_json
from servewise.secrets import load_api_key
from servewise.spec import SpecError, parse_duration, parse_labels
from servewise.store import open_store

EXIT_NOT_READY = 3  # a start that never became ready

HELP = """Measure how a server starts: spawn, port open, health OK, models listed, first streamed
response (TTFT) and warm requests, with phase markers from its log, N times; report min/median/max/CV
and say whether startup is repeatable, which phase dominates, and whether loading is I/O-bound.

Example: servewise coldstart --runs 5 --ready http://127.0.0.1:8000/health --
python -m vllm.entrypoints.openai.api_server --model ./my-model --port 8000
"""


def _endpoint(ready: str | None, url: str | None, api: str, model: str | None, prompt: str, max_tokens: int,
              api_key_env: str | None) -> Endpoint:  # fmt: skip
    if api not in ("chat", "completions"):
        raise SpecError(f"--api must be chat or completions, got {api!r}")
    if not ready and not url:
        raise SpecError("give --ready URL (a health URL, e.g. http://127.0.0.1:8000/health) or --url BASE")
    try:
        base = url.rstrip("/") if url else origin(ready or "")
        origin(base)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    api_key = load_api_key(api_key_env, fallback=False)
    return Endpoint(
        base_url=base,
        ready_url=ready or health_url(base),
        api=api,  # type: ignore[arg-type]
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        api_key=api_key,
    )


def coldstart(
    command: Annotated[list[str] | None, typer.Argument(help="the server command, after `--`")] = None,
    runs: Annotated[int, typer.Option("--runs", "-n", min=1, help="starts to measure")] = 3,
    ready: Annotated[str | None, typer.Option(help="health URL that answers 2xx when ready")] = None,
    url: Annotated[
        str | None, typer.Option(help="base URL of the OpenAI API (default: from --ready)")
    ] = None,
    attach: Annotated[int | None, typer.Option(help="measure a server started elsewhere (its PID)")] = None,
    log: Annotated[
        Path | None,
        typer.Option(help="with --attach: the server's log file, followed for phase markers from attach on"),
    ] = None,
    api: Annotated[str, typer.Option(help="chat or completions, for the first request")] = "chat",
    model: Annotated[str | None, typer.Option(help="model id for requests (default: first listed)")] = None,
    prompt: Annotated[str, typer.Option(help="prompt of the first and warm requests")] = (
        "Say hello in one short sentence."
    ),
    max_tokens: Annotated[int, typer.Option(min=1)] = 16,
    warm_requests: Annotated[
        int, typer.Option(min=0, help="requests after the first, for steady latency")
    ] = 5,
    timeout: Annotated[str, typer.Option(help="per start, until the first response (600, 10m)")] = "600",
    phase: Annotated[
        list[str] | None, typer.Option(help="NAME=REGEX: a phase marker of your own (repeatable)")
    ] = None,
    clear: Annotated[
        list[Path] | None, typer.Option(help="folder to delete before each start (repeatable)")
    ] = None,
    drop_caches: Annotated[bool, typer.Option(help="drop the page cache before each start (root)")] = False,
    compile_cache: Annotated[
        Path | None, typer.Option(help="compile cache to report (default: vLLM's)")
    ] = None,
    model_path: Annotated[Path | None, typer.Option(help="model files, for the I/O verdict")] = None,
    sample_hz: Annotated[float, typer.Option(min=1.0, max=50.0, help="timeline sampling rate")] = 10.0,
    grace: Annotated[float, typer.Option(help="seconds between SIGTERM and SIGKILL when stopping")] = 10.0,
    api_key_env: Annotated[str | None, typer.Option(help="environment variable holding the API key")] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE stored with the run (repeatable)")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="run store: a SQLite file or a postgresql:// URL (default: $SERVEWISE_STORE)")
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="where server logs go (default: beside the store)")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="summary as JSON to FILE (- = stdout)")
    ] = None,
) -> None:
    """Measure server startup phase by phase, N times."""
    console = Console(stderr=json_out == "-")
    if command and attach is not None:
        raise SpecError("give either a server command after `--` or --attach PID, not both")
    if log is not None and attach is None:
        raise SpecError("--log follows the log of a server started elsewhere (--attach PID); "
                        "a launched server's output is captured already")
    if log is not None and not log.is_file():
        raise SpecError(f"--log: no file at {log}")
    endpoint = _endpoint(ready, url, api, model, prompt, max_tokens, api_key_env)
    user_phases = tuple(parse_user_phase(p) for p in phase or ())
    labels = parse_labels(label or [])
    run_store = open_store(store)
    config = ColdstartConfig(
        endpoint=endpoint,
        command=tuple(command or ()),
        attach_pid=attach,
        attach_log=log,
        runs=runs,
        timeout_s=parse_duration(timeout),
        warm_requests=warm_requests,
        user_phases=user_phases,
        clear_dirs=tuple(clear or ()),
        drop_caches=drop_caches,
        compile_cache=compile_cache,
        model_path=model_path,
        sample_interval_s=1.0 / sample_hz,
        grace_s=grace,
        log_dir=log_dir or run_store.local_dir / "coldstart-logs",
    )
    if attach is not None and runs > 1:
        console.print("[yellow]--attach measures the one start already under way; --runs is ignored[/]")

    with run_store, console.status("starting…") as status:
        result = run_coldstart(
            config,
            run_store,
            labels=labels,
            on_progress=lambda p: status.update(progress_text(p)),
            on_result=lambda r: console.print(run_table(r)),
        )
    if result.runs_ok:
        console.print(summary_view(result))
    console.print(f"stored as run {result.run_id} in {run_store.location}; server logs in {result.log_dir}")
    if json_out:
        write_json(result.to_json(), json_out)
    if result.status == "interrupted":
        console.print("[yellow]interrupted: the server was stopped; runs so far are stored[/]")
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status != "ok":
        raise typer.Exit(EXIT_NOT_READY)


def register(app: typer.Typer) -> None:
    app.command(
        "coldstart",
        help=HELP,
        context_settings={"allow_interspersed_args": False},
    )(coldstart)
