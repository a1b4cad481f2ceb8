"""Trace replay input: Mooncake and plain traces, prompts that share what the trace shares, bad lines, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from servewise.cli import trace as trace_cli
from servewise.cli.app import ServewiseGroup
from servewise.flows.trace import analyze_trace
from servewise.spec import SpecError
from servewise.workload.prompts import PromptSynthesizer
from servewise.workload.trace import (
    block_offset,
    load_trace,
    trace_prompt,
    trace_segments,
)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def mooncake(tmp_path: Path, rows: list[dict[str, object]], name: str = "trace.jsonl") -> str:
    return write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in rows))


# --- formats ---------------------------------------------------------------------------------------------


def test_mooncake_trace_reads_milliseconds_lengths_and_hash_ids(tmp_path):
    path = write(
        tmp_path,
        "mc.jsonl",
        """
        {"timestamp": 1000, "input_length": 1100, "output_length": 50, "hash_ids": [0, 1, 2]}

        {"timestamp": 1500, "input_length": 600, "output_length": 7, "hash_ids": [0, 3], "extra": true}
        {"timestamp": 3000, "input_length": 20, "output_length": 9, "hash_ids": []}
        """,
    )
    trace = load_trace(path)
    assert (trace.format, trace.block_size, trace.path, len(trace)) == ("mooncake", 512, path, 3)
    assert trace.offsets_s.tolist() == [0.0, 0.5, 2.0]
    assert trace.input_tokens.tolist() == [1100, 600, 20]
    assert trace.output_tokens.tolist() == [50, 7, 9]
    assert [trace.hash_ids(i).tolist() for i in range(3)] == [[0, 1, 2], [0, 3], []]
    assert [trace.session_id(i) for i in range(3)] == [None, None, None]
    assert trace.offsets_s.dtype == np.float64 and trace.input_tokens.dtype == np.int32
    assert trace.hash_values.dtype == np.int64 and trace.hash_starts.tolist() == [0, 3, 5, 5]
    with pytest.raises(ValueError):
        trace.offsets_s[0] = 1.0  # read-only: a loaded trace is shared, never edited


def test_plain_jsonl_and_csv_read_the_same_trace(tmp_path):
    jsonl = write(
        tmp_path,
        "plain.jsonl",
        """
        {"timestamp": 10.0, "input_tokens": 100, "output_tokens": 20, "session_id": "alice"}
        {"timestamp": 10.25, "input_tokens": 300, "output_tokens": 40}
        {"timestamp": 12, "input_tokens": 50, "output_tokens": 5, "session_id": "alice"}
        {"timestamp": 12, "input_tokens": 70, "output_tokens": 6, "session_id": 7}
        """,
    )
    csv = write(
        tmp_path,
        "plain.csv",
        """
        session_id,timestamp,input_tokens,output_tokens
        alice,10.0,100,20
         ,10.25,300,40
        alice,12,50,5
        7,12,70,6
        """,
    )
    traces = [load_trace(jsonl), load_trace(csv)]
    for trace in traces:
        assert trace.format == "plain" and len(trace) == 4
        assert trace.offsets_s.tolist() == [0.0, 0.25, 2.0, 2.0]
        assert trace.input_tokens.tolist() == [100, 300, 50, 70]
        assert trace.output_tokens.tolist() == [20, 40, 5, 6]
        assert [trace.session_id(i) for i in range(4)] == [0, None, 0, 1]
        assert all(len(trace.hash_ids(i)) == 0 for i in range(4))


def test_a_csv_is_known_by_its_header_whatever_its_name(tmp_path):
    path = write(tmp_path, "requests.txt", "timestamp,input_tokens,output_tokens\n0,10,2\n1.5,20,3\n")
    trace = load_trace(path)
    assert trace.format == "plain" and trace.offsets_s.tolist() == [0.0, 1.5]


def test_time_scale_replays_faster(tmp_path):
    path = mooncake(
        tmp_path,
        [{"timestamp": t, "input_length": 10, "output_length": 1, "hash_ids": [0]} for t in (0, 1000, 4000)],
    )
    assert load_trace(path, time_scale=2).offsets_s.tolist() == [0.0, 0.5, 2.0]
    assert load_trace(path, time_scale=0.5).offsets_s.tolist() == [0.0, 2.0, 8.0]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(SpecError, match="time scale"):
            load_trace(path, time_scale=bad)


# --- prompts ---------------------------------------------------------------------------------------------


def test_requests_sharing_leading_hash_ids_share_exactly_that_prefix(tmp_path):
    path = mooncake(
        tmp_path,
        [
            {"timestamp": 0, "input_length": 12, "output_length": 4, "hash_ids": [1, 2, 3]},
            {"timestamp": 5, "input_length": 12, "output_length": 4, "hash_ids": [1, 2, 9]},
        ],
    )
    trace = load_trace(path, block_size=4)
    synth = PromptSynthesizer(seed=11)
    a, b = trace_prompt(synth, trace, 0), trace_prompt(synth, trace, 1)
    shared = f"{synth.prompt(4, block_offset(1))} {synth.prompt(4, block_offset(2))} "
    assert a.startswith(shared) and b.startswith(shared)
    words_a, words_b = a.split(" "), b.split(" ")
    common = next(k for k, (x, y) in enumerate(zip(words_a, words_b, strict=True)) if x != y)
    assert common == 8  # exactly the two shared blocks of four one-token words; they differ after
    assert a[len(shared) :] == synth.prompt(4, block_offset(3))
    assert len(words_a) == len(words_b) == 12


def test_a_partial_last_block_and_an_uncovered_tail_fill_the_prompt_to_its_length(tmp_path):
    path = mooncake(
        tmp_path,
        [
            {"timestamp": 0, "input_length": 10, "output_length": 4, "hash_ids": [1, 2, 3]},  # 4 + 4 + 2
            {"timestamp": 0, "input_length": 15, "output_length": 4, "hash_ids": [1, 2]},  # 4 + 4 + 7 unique
            {"timestamp": 0, "input_length": 15, "output_length": 4, "hash_ids": [1, 2]},
        ],
    )
    trace = load_trace(path, block_size=4)
    synth = PromptSynthesizer(seed=11)
    prompts = [trace_prompt(synth, trace, i) for i in range(3)]
    assert [len(p.split(" ")) for p in prompts] == [10, 15, 15]
    assert prompts[1] != prompts[2]  # same ids, but each request's tail is its own
    assert prompts[1].split(" ")[:8] == prompts[2].split(" ")[:8]


def test_plain_trace_prompts_are_unique_and_of_the_asked_length(tmp_path):
    path = write(tmp_path, "p.csv", "timestamp,input_tokens,output_tokens\n0,30,1\n0,30,1\n1,5,1\n")
    trace = load_trace(path)
    synth = PromptSynthesizer(seed=2)
    prompts = [trace_prompt(synth, trace, i) for i in range(3)]
    assert [len(p.split(" ")) for p in prompts] == [30, 30, 5]
    assert prompts[0].split(" ")[:5] != prompts[1].split(" ")[:5]


def test_same_trace_and_seed_give_the_same_prompts_byte_for_byte(tmp_path):
    rows = [
        {"timestamp": 10 * i, "input_length": 700 + 37 * i, "output_length": 3, "hash_ids": [0, 100 + i % 3]}
        for i in range(20)
    ]
    path = mooncake(tmp_path, rows)

    def prompts(seed: int) -> list[str]:
        trace, synth = load_trace(path), PromptSynthesizer(seed=seed)
        return [trace_prompt(synth, trace, i) for i in range(len(trace))]

    first = prompts(5)
    assert prompts(5) == first
    assert prompts(6) != first
    assert len({p[:200] for p in first}) == 1  # hash id 0 is everyone's first 512-token block


def test_segments_key_each_block_by_its_chain_and_the_tail_uniquely(tmp_path):
    path = mooncake(
        tmp_path,
        [
            {"timestamp": 0, "input_length": 14, "output_length": 1, "hash_ids": [1, 2, 3]},
            {"timestamp": 0, "input_length": 14, "output_length": 1, "hash_ids": [1, 2, 9]},
            {"timestamp": 0, "input_length": 8, "output_length": 1, "hash_ids": [9, 2]},
        ],
    )
    trace = load_trace(path, block_size=4)
    a, b, c = (trace_segments(trace, i) for i in range(3))
    assert [n for _, n in a] == [4, 4, 4, 2] and [n for _, n in c] == [4, 4]
    assert a[:2] == b[:2] and a[2] != b[2]
    assert a[3][0] is None and b[3][0] is None  # the uncovered tails are each request's own: never shared
    assert c[1][0] != a[1][0]  # id 2 after 9 is not id 2 after 1: a prefix cache would miss it
    plain = load_trace(write(tmp_path, "p.csv", "timestamp,input_tokens,output_tokens\n0,30,1\n"))
    assert [n for _, n in trace_segments(plain, 0)] == [30]


# --- bad input -------------------------------------------------------------------------------------------

MC = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n'

BAD = [
    ("missing field", "a.jsonl", MC + '{"timestamp": 5, "input_length": 600, "hash_ids": [1]}\n', 2, "output_length"),
    ("missing plain field", "a.jsonl", '{"timestamp": 0, "input_tokens": 5, "output_tokens": 1}\n{"timestamp": 1, "output_tokens": 1}\n', 2, "input_tokens"),
    ("missing timestamp", "a.jsonl", MC + MC + '{"input_length": 6, "output_length": 5}\n', 3, "timestamp"),
    ("negative length", "a.jsonl", MC + '{"timestamp": 5, "input_length": -3, "output_length": 5}\n', 2, "input_length"),
    ("zero length", "a.jsonl", '{"timestamp": 0, "input_tokens": 5, "output_tokens": 0}\n', 1, "output_tokens"),
    ("non-numeric length", "a.jsonl", '{"timestamp": 0, "input_tokens": "many", "output_tokens": 1}\n', 1, "input_tokens"),
    ("fractional length", "a.jsonl", '{"timestamp": 0, "input_tokens": 2.5, "output_tokens": 1}\n', 1, "input_tokens"),
    ("non-numeric csv length", "a.csv", "timestamp,input_tokens,output_tokens\n0,5,1\n1,5,lots\n", 3, "output_tokens"),
    ("non-numeric timestamp", "a.jsonl", '{"timestamp": "noon", "input_tokens": 5, "output_tokens": 1}\n', 1, "timestamp"),
    ("backwards", "a.jsonl", MC + '{"timestamp": 9, "input_length": 6, "output_length": 5}\n' + '{"timestamp": 8, "input_length": 6, "output_length": 5}\n', 3, "timestamp"),
    ("backwards csv", "a.csv", "timestamp,input_tokens,output_tokens\n2,5,1\n\n1,5,1\n", 4, "timestamp"),
    ("too many hash ids", "a.jsonl", MC + '{"timestamp": 5, "input_length": 600, "output_length": 5, "hash_ids": [1, 2, 3]}\n', 2, "hash_ids"),
    ("hash ids not ints", "a.jsonl", '{"timestamp": 5, "input_length": 600, "output_length": 5, "hash_ids": ["x"]}\n', 1, "hash_ids"),
    ("not json", "a.jsonl", MC + '{"timestamp": 5, "input_length": 6\n', 2, "JSON"),
    ("not an object", "a.jsonl", MC + "[1, 2]\n", 2, "JSON object"),
    ("unknown csv header", "a.csv", "timestamp,input_tokens,output_tokens,prompt\n0,5,1,hi\n", 1, "'prompt'"),
    ("missing csv column", "a.csv", "timestamp,input_tokens\n0,5\n", 1, "output_tokens"),
    ("short csv row", "a.csv", "timestamp,input_tokens,output_tokens\n0,5\n", 2, "fields"),
    ("bad session id", "a.jsonl", '{"timestamp": 0, "input_tokens": 5, "output_tokens": 1, "session_id": [1]}\n', 1, "session_id"),
    ("neither format", "a.jsonl", '{"timestamp": 0, "prompt": "hi"}\n', 1, "input_length"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "name", "text", "line", "field"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_line_is_one_message_naming_file_line_and_field(tmp_path, case, name, text, line, field):
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_trace(path, block_size=512)
    message = str(info.value)
    assert "\n" not in message
    assert path in message and f"line {line}:" in message and field in message, message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n\n  \n"),
        ("empty.csv", ""),
        ("header-only.csv", "timestamp,input_tokens,output_tokens\n\n"),
    ],
)
def test_an_empty_trace_says_so(tmp_path, name, text):
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as info:
        load_trace(path)
    assert str(info.value) == f"trace {path} has no requests"


def test_an_unreadable_trace_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_trace(str(tmp_path / "nope.jsonl"))
    (tmp_path / "bin.jsonl").write_bytes(
        b'{"timestamp": 0, "input_tokens": 5, "output_tokens": 1}\n\xff\xfe\n'
    )
    with pytest.raises(SpecError, match="UTF-8"):
        load_trace(str(tmp_path / "bin.jsonl"))


# --- `servewise trace analyze` -----------------------------------------------------------------------------


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    trace_cli.register(app)
    return app


def agent_trace(tmp_path: Path) -> str:
    """Two users: each request repeats a 2-block system prompt, then one block of its own."""
    rows = []
    for i in range(40):
        rows.append(
            {
                "timestamp": 250 * i + (0 if i < 30 else 5000),
                "input_length": 1536,
                "output_length": 100 + i,
                "hash_ids": [0, 1, 1000 + i],
                "session_id": f"user-{i % 2}",
            }
        )
    return mooncake(tmp_path, rows, "agent.jsonl")


def test_bench_block_size_goes_with_a_trace_only(tmp_path):
    from servewise.spec import build_spec

    path = write(tmp_path, "t.jsonl", '{"timestamp":0,"input_length":40,"output_length":4,"hash_ids":[0,1]}\n')
    flags = dict(
        spec_file=None, target="http://127.0.0.1:9", api=None, model=None, stream=None, load=None, duration=None,
        requests=None, input_tokens=None, output_tokens=None, dataset=None, tokenizer=None, seed=None, slo=None,
        warmup=None, cooldown=None, workers=None, labels=[], api_key_env=None, api_key_file=None, timeout=None,
    )  # fmt: skip
    spec = build_spec(**flags, trace=path, block_size=32, time_scale=2.0)
    assert spec.workload.trace is not None
    assert (spec.workload.trace.block_size, spec.workload.trace.time_scale) == (32, 2.0)
    with pytest.raises(SpecError, match=r"--block-size .* give --trace FILE"):
        build_spec(**flags, block_size=32)


def test_trace_analyze_json(app, tmp_path):
    path = agent_trace(tmp_path)
    result = CliRunner().invoke(app, ["trace", "analyze", path, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["format"] == "mooncake" and summary["requests"] == 40 and summary["block_size"] == 512
    assert summary["duration_s"] == pytest.approx(14.75)
    assert summary["mean_rate_rps"] == pytest.approx(40 / 14.75)
    # ten requests at the mean rate take about 3.7 s: the peak window is 10 s, and its best one holds 30
    assert summary["peak_rate_rps"] == pytest.approx(3.0) and summary["peak_window_s"] == 10.0
    assert summary["peak_start_s"] == 0.0
    assert len(summary["rate_over_time"]) == 20 and summary["rate_over_time"][0]["start_s"] == 0.0
    assert sum(b["rps"] for b in summary["rate_over_time"]) * summary["bucket_s"] == pytest.approx(40)
    assert summary["input_tokens"] == {"count": 40, "p50": 1536.0, "p90": 1536.0, "p99": 1536.0, "mean": 1536.0, "max": 1536}  # fmt: skip
    assert summary["output_tokens"]["max"] == 139 and summary["output_tokens"]["p50"] == pytest.approx(119.5)
    assert summary["sessions"] == {"count": 2, "requests": 40, "mean_turns": 20.0, "max_turns": 20}
    # every request after the first hits the two shared blocks: 39 * 1024 of 40 * 1536 prompt tokens
    assert summary["theoretical_prefix_hit_rate"] == pytest.approx(39 * 1024 / (40 * 1536))

    faster = json.loads(
        CliRunner().invoke(app, ["trace", "analyze", path, "--json", "--time-scale", "2"]).output
    )
    assert faster["duration_s"] == pytest.approx(14.75 / 2) and faster["time_scale"] == 2.0


def test_trace_analyze_tables_fit_80_columns(app, tmp_path):
    path = write(
        tmp_path,
        "plain.csv",
        "timestamp,input_tokens,output_tokens\n"
        + "".join(f"{i * 0.37:.2f},{100 + i},{10 + i}\n" for i in range(300)),
    )
    result = CliRunner().invoke(app, ["trace", "analyze", path], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "requests" in text and "300" in text and "Token lengths" in text and "Rate over time" in text
    assert "none in the trace" in text  # no sessions
    assert max(len(line) for line in text.splitlines()) <= 80


def test_short_traces_have_a_rate_only_when_they_span_time(app, tmp_path):
    one = write(tmp_path, "one.csv", "timestamp,input_tokens,output_tokens\n5,10,1\n")
    summary = analyze_trace(one)
    assert (summary.duration_s, summary.mean_rate_rps, summary.peak_rate_rps) == (0.0, None, None)
    assert summary.rate_over_time == [] and summary.theoretical_prefix_hit_rate == 0.0
    result = CliRunner().invoke(app, ["trace", "analyze", one], env={"COLUMNS": "80"})
    assert result.exit_code == 0 and "spans no time" in result.output
    short = write(tmp_path, "short.csv", "timestamp,input_tokens,output_tokens\n0,10,1\n0.5,10,1\n2,10,1\n")
    summary = analyze_trace(short)  # shorter than any peak window: the peak is the mean
    assert summary.peak_rate_rps == summary.mean_rate_rps == 1.5 and summary.peak_window_s == 2.0


def test_trace_analyze_bad_file_exits_2_with_one_line(app, tmp_path):
    path = write(tmp_path, "bad.jsonl", MC + '{"timestamp": 5, "input_length": -1, "output_length": 5}\n')
    result = CliRunner().invoke(app, ["trace", "analyze", path])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "line 2: input_length" in " ".join(result.output.split())


def test_trace_help_gives_both_formats_with_an_example_line(app):
    result = CliRunner().invoke(app, ["trace", "analyze", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.output
    assert "Mooncake" in text and '"hash_ids":[0,1]}' in text
    assert '"input_tokens":812' in text and "timestamp,input_tokens,output_tokens,session_id" in text
    assert max(len(line) for line in text.splitlines()) <= 80


# --- memory ----------------------------------------------------------------------------------------------

CHILD = """
import sys
from servewise.workload.prompts import PromptSynthesizer
from servewise.workload.trace import load_trace, trace_prompt
trace = load_trace(sys.argv[1])
assert len(trace) == 1_000_000, len(trace)
synth = PromptSynthesizer(seed=1)
assert len(trace_prompt(synth, trace, 999_999).split(" ")) == int(trace.input_tokens[999_999])
# VmHWM is this address space's peak (kB); ru_maxrss would also count the parent's pages before exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


@pytest.mark.slow
def test_a_million_request_trace_loads_in_under_300_mb(tmp_path):
    path = tmp_path / "million.jsonl"
    with path.open("w") as out:
        for chunk in range(100):
            out.write(
                "".join(
                    f'{{"timestamp": {i * 0.004:.3f}, "input_tokens": {64 + i % 4000}, '
                    f'"output_tokens": {1 + i % 500}, "session_id": "user-{i // 8}"}}\n'
                    for i in range(chunk * 10_000, (chunk + 1) * 10_000)
                )
            )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    max_rss_mb = int(proc.stdout.split()[-1]) / 1024
    print(f"max RSS loading a 1,000,000-request trace: {max_rss_mb:.0f} MB")
    assert max_rss_mb < 300
