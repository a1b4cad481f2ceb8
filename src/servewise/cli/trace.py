"""`servewise trace analyze`: what a request trace holds before it is replayed against an endpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from servewise.cli.options import JsonFlag
from servewise.flows.trace import analyze_trace
from servewise.report.trace import trace_view
from servewise.workload.trace import DEFAULT_BLOCK_SIZE

FORMATS = """\
[bold]Formats[/], told apart per file (blank lines are skipped; a bad line
stops the load with its file, line and field, exit 2):

[bold]Mooncake JSONL[/]: timestamp in milliseconds, input_length,
output_length, and hash_ids: one id per block of --block-size prompt
tokens, in order, at most ceil(input_length / block size) of them.
Requests that start with the same ids share that prompt prefix.

  {"timestamp":0,"input_length":900,"output_length":64,"hash_ids":[0,1]}

[bold]Plain trace[/], JSONL or CSV with a header: timestamp in seconds,
input_tokens, output_tokens, optional session_id (a conversation's turns).

  {"timestamp":1.5,"input_tokens":812,"output_tokens":128,"session_id":"u7"}

  timestamp,input_tokens,output_tokens,session_id
  1.5,812,128,u7
"""

ANALYZE_EPILOG = f"""\
[bold]Examples[/]

  servewise trace analyze conversation_trace.jsonl

  servewise trace analyze requests.csv --time-scale 2   [dim]# demand x2[/]

{FORMATS}
[bold]Prefix hit rate[/]: the share of prompt tokens an unbounded prefix
cache could have served, block by block in arrival order: the ceiling for
any engine's own hit rate on this trace.
"""

trace_app = typer.Typer(
    help="Request traces with arrival times (Mooncake or plain JSONL/CSV): what they hold.",
    no_args_is_help=True,
    epilog=FORMATS,
)


@trace_app.command("analyze", epilog=ANALYZE_EPILOG)
def analyze(
    file: Annotated[
        Path, typer.Argument(help="The trace: Mooncake JSONL, or a plain trace as JSONL or CSV.")
    ],
    as_json: JsonFlag = False,
    time_scale: Annotated[
        float,
        typer.Option(
            "--time-scale", help="Replay X times faster: offsets are divided by X (2 = twice the demand)."
        ),
    ] = 1.0,
    block_size: Annotated[
        int, typer.Option("--block-size", help="Tokens per Mooncake hash id (the trace's KV block size).")
    ] = DEFAULT_BLOCK_SIZE,
) -> None:
    """Duration, requests, rate over time and its peak, token lengths, sessions, theoretical prefix hit rate.

    Times are as a replay would send them: seconds from the first request, divided by --time-scale.
    """
    summary = analyze_trace(str(file), time_scale=time_scale, block_size=block_size)
    if as_json:
        typer.echo(json.dumps(summary.to_json(), indent=2))
    else:
        Console().print(trace_view(summary))


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace", rich_help_panel="Measure")
