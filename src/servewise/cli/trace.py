"""`servewise trace analyze`: what a request trace holds before it is replayed against an endpoint; and
`servewise trace from-log`: a trace, with no prompt text in it, made from a log of captured requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from servewise.cli.options import JsonFlag
from servewise.flows.trace import analyze_trace, trace_from_log
from servewise.report.trace import conversion_view, trace_view
from servewise.workload.trace import DEFAULT_BLOCK_SIZE
from servewise.workload.trace_log import DEFAULT_OUTPUT_TOKENS

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

FROM_LOG_EPILOG = """\
[bold]Examples[/]

  servewise trace from-log gateway.jsonl -o shareable.jsonl

  servewise trace from-log gateway.jsonl -o t.jsonl --tokenizer ./llama/

  servewise bench --target URL --trace shareable.jsonl   [dim]# replay it[/]

[bold]The log[/]: JSONL, one captured OpenAI request per line, as a gateway
or proxy writes it (blank lines are skipped; response is optional):

  {"timestamp":"2025-06-01T12:00:00.25Z","session_id":"u7",
   "request":{"messages":[{"role":"user","content":"hi"}],"max_tokens":64},
   "response":{"usage":{"prompt_tokens":9,"completion_tokens":41}}}

timestamp: epoch seconds or ISO-8601 (alias created); lines are sorted by it.
request (alias body; or the line itself): a chat body (messages, tools) or a
completions body (prompt: a string or token ids; one prompt per line).
Output length: response.usage.completion_tokens, else max_completion_tokens
or max_tokens, else --output-tokens. Session: session_id, else request.user.
A bad line stops the conversion with its line and field (exit 2), and no
trace is written.

[bold]Tokens[/]: without --tokenizer, the twin's estimate (a word of up to 7
letters is one token). A chat is flattened in order: its tools, then for each
message a role token and the content's text (no chat template), so the next
turn of a conversation starts with all of the one before.

[bold]What is written[/]: a Mooncake trace (see servewise trace --help) with no
prompt text, model or user in it: times in ms from the first request, token
counts, and one id per --block-size tokens. An id is a chained hash of its
block and all before it, salted per export, numbered in order of first
appearance: requests share leading ids where their prompts share a prefix,
and no id can be matched to a guessed text. Session ids become 0, 1, 2, ...

[bold]Round trip[/]: servewise trace analyze OUT gives the prefix hit rate an
unbounded block cache would have had on the logged prompts. bench --trace
reads 512-token blocks; replay another --block-size from a spec file
(workload.trace.block_size).
"""

trace_app = typer.Typer(
    help="Request traces with arrival times (Mooncake or plain JSONL/CSV): what they hold, and one made "
    "from a log of captured requests that keeps no prompt text.",
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


@trace_app.command("from-log", epilog=FROM_LOG_EPILOG)
def from_log(
    log: Annotated[Path, typer.Argument(help="The captured requests: JSONL, one request per line.")],
    out: Annotated[
        Path,
        typer.Option("--output", "-o", help="The trace to write (Mooncake JSONL), replaced only when done."),
    ],
    block_size: Annotated[
        int, typer.Option("--block-size", min=1, help="Tokens per hash id (the KV block size to model).")
    ] = DEFAULT_BLOCK_SIZE,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="A tokenizer.json, or a folder with one, for exact counts (default: the word estimate).",
        ),
    ] = None,
    output_tokens: Annotated[
        int,
        typer.Option(
            "--output-tokens",
            min=1,
            help="Output length of a request that logged neither usage nor max_tokens.",
        ),
    ] = DEFAULT_OUTPUT_TOKENS,
    as_json: JsonFlag = False,
) -> None:
    """Make a shareable trace from a log of captured requests: token counts and block ids, no prompt text.

    Prints what it wrote: requests, duration, where lengths came from, theoretical prefix hit rate.
    """
    conversion = trace_from_log(
        str(log), str(out), block_size=block_size, tokenizer=tokenizer, output_tokens=output_tokens
    )
    if as_json:
        typer.echo(json.dumps(conversion.to_json(), indent=2))
    else:
        Console().print(conversion_view(conversion))


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace", rich_help_panel="Measure")
