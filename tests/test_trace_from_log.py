"""`servewise trace from-log`: a log of captured requests becomes a trace with no text that replays and
analyzes to the prefix reuse of the logged prompts."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from servewise.cli import trace as trace_cli
from servewise.cli.app import ServewiseGroup
from servewise.spec import SpecError
from servewise.twin.server import estimate_prompt_tokens
from servewise.workload.trace import load_trace
from servewise.workload.trace_log import convert_log, load_tokenizer, word_tokens

from cli_runner import servewise

# short words (each one token in the estimate), none of them inside a key of the written trace
VOCAB = ("alpha", "bravo", "charlie", "delta", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima",
         "mike", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "victor", "whiskey", "xray", "yankee",
         "zulu")  # fmt: skip
SECRET_NAMES = ("secret-model", "user-alice", "conv-7")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer(cls=ServewiseGroup)
    trace_cli.register(app)
    return app


def write_log(path: Path, entries: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return str(path)


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def agent_log(rng: random.Random, *, system_words: int = 40) -> list[tuple[float, dict[str, Any]]]:
    """(arrival s, log entry): six three-turn chats over two system prompts, and completions that share one.

    Each turn resends the conversation so far, as a chat client does.
    """
    systems = [words(rng, system_words) for _ in range(2)]
    requests: list[tuple[float, dict[str, Any]]] = []
    for c in range(6):
        messages = [{"role": "system", "content": systems[c % 2]}]
        for t in range(3):
            messages = [*messages, {"role": "user", "content": words(rng, rng.randint(5, 15))}]
            body: dict[str, Any] = {"model": "secret-model", "messages": messages, "max_tokens": 50}
            entry: dict[str, Any] = {"request": body}
            if c % 3 == 0:
                entry["session_id"] = f"conv-{c}"
            elif c % 3 == 1:
                body["user"] = "user-alice" if c == 1 else f"user-{c}"
            requests.append((100.0 + 0.7 * c + 3.1 * t, entry))
            answer = words(rng, rng.randint(3, 10))
            entry["response"] = {"usage": {"prompt_tokens": 999, "completion_tokens": len(answer.split())}}
            messages = [*messages, {"role": "assistant", "content": answer}]
    for k in range(4):
        prompt = systems[0] + " " + words(rng, 6)
        requests.append((101.05 + 2 * k, {"request": {"model": "secret-model", "prompt": prompt}}))
    requests.append((101.2, {"request": {"prompt": [5, 6, 7, 8, 9]}}))
    return requests


def shuffled_log(path: Path, requests: list[tuple[float, dict[str, Any]]], rng: random.Random) -> str:
    """The entries in a random order, their times written as epoch numbers or as ISO-8601 strings."""
    entries = []
    for i, (at, entry) in enumerate(requests):
        if i % 2:
            minutes, seconds = divmod(at, 60)
            stamp: float | str = f"1970-01-01T00:{int(minutes):02d}:{seconds:06.3f}Z"
        else:
            stamp = at
        entries.append({"timestamp": stamp, **entry})
    rng.shuffle(entries)
    return write_log(path, entries)


def expected_tokens(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The documented flattening, written out again: a role token, then each word, message by message."""
    body = entry["request"]
    if "messages" in body:
        tokens = []
        for message in body["messages"]:
            tokens.append(("role", message["role"]))
            tokens += [("word", w) for w in message["content"].split()]
        return tokens
    if isinstance(body["prompt"], list):
        return [("id", str(t)) for t in body["prompt"]]
    return [("word", w) for w in body["prompt"].split()]


def block_cache_hit_rate(prompts: list[list[tuple[str, str]]], block: int) -> float:
    """Share of prompt tokens an unbounded block cache serves: a block hits when its whole prefix was seen."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    hits = total = 0
    for tokens in prompts:
        total += len(tokens)
        for end in range(block, len(tokens) + block, block):
            prefix = tuple(tokens[:end])
            if prefix in seen:
                hits += len(prefix) - (end - block)
            seen.add(prefix)
    return hits / total


def test_the_trace_keeps_the_logged_prompts_prefix_reuse(app, tmp_path):
    rng = random.Random(7)
    requests = agent_log(rng)
    log = shuffled_log(tmp_path / "gateway.jsonl", requests, rng)
    out = tmp_path / "trace.jsonl"
    result = CliRunner().invoke(
        app, ["trace", "from-log", log, "-o", str(out), "--block-size", "16", "--json"]
    )
    assert result.exit_code == 0, result.output
    conversion = json.loads(result.output)

    ordered = sorted(requests, key=lambda r: r[0])
    prompts = [expected_tokens(entry) for _, entry in ordered]
    expected = block_cache_hit_rate(prompts, 16)
    assert 0.3 < expected < 0.9  # the log does share prefixes, and not everything
    analyzed = CliRunner().invoke(app, ["trace", "analyze", str(out), "--block-size", "16", "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.output)["theoretical_prefix_hit_rate"] == pytest.approx(expected, rel=1e-12)
    assert conversion["trace"]["theoretical_prefix_hit_rate"] == pytest.approx(expected, rel=1e-12)

    trace = load_trace(str(out), block_size=16)
    assert trace.input_tokens.tolist() == [len(p) for p in prompts]
    assert trace.offsets_s.tolist() == pytest.approx([at - ordered[0][0] for at, _ in ordered], abs=1e-3)
    assert trace.hash_ids(0).tolist() == list(range(len(trace.hash_ids(0))))  # numbered as first seen
    assert conversion["trace"]["path"] == str(out) and conversion["log"] == log
    assert conversion["tokenizer"] is None and conversion["trace"]["requests"] == len(requests)
    counts = (conversion[k] for k in ("output_from_usage", "output_from_max_tokens", "output_defaulted"))
    assert tuple(counts) == (18, 0, 5)
    assert conversion["requests_with_prompt_usage"] == 18
    chat_tokens = sum(
        len(p) for p, (_, e) in zip(prompts, ordered, strict=True) if "messages" in e["request"]
    )
    assert conversion["prompt_tokens_ratio"] == pytest.approx(chat_tokens / (18 * 999))


def test_no_text_of_the_log_is_in_the_trace(app, tmp_path):
    rng = random.Random(3)
    log = shuffled_log(tmp_path / "gateway.jsonl", agent_log(rng), rng)
    out = tmp_path / "trace.jsonl"
    result = CliRunner().invoke(app, ["trace", "from-log", log, "-o", str(out)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    written = out.read_text()
    for word in (*VOCAB, *SECRET_NAMES, "system", "assistant"):
        assert word not in written and word not in result.output, word
    for line in written.splitlines():
        row = json.loads(line)
        assert set(row) <= {"timestamp", "input_length", "output_length", "hash_ids", "session_id"}
        values = [row["timestamp"], row["input_length"], row["output_length"], *row["hash_ids"]]
        assert all(type(v) is int for v in [*values, row.get("session_id", 0)])
    # the same log gives the same trace: the salt changes the digests, never the ids they are numbered as
    again = tmp_path / "again.jsonl"
    assert CliRunner().invoke(app, ["trace", "from-log", log, "-o", str(again)]).exit_code == 0
    assert again.read_text() == written
    text = result.output
    assert "requests" in text and "prefix hit rate" in text and "no text" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_an_id_stands_for_its_block_and_all_before_it(tmp_path):
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"timestamp": 0, "request": {"prompt": "alpha bravo charlie delta golf"}},
            {"timestamp": 1, "request": {"prompt": "hotel india charlie delta golf"}},
            {"timestamp": 2, "request": {"prompt": "alpha bravo charlie delta kilo"}},
        ],
    )
    a, b, c = (r.hash_ids for r in convert_log(log, block_size=2).rows)
    assert a == [0, 1, 2] and b == [3, 4, 5]  # the same words after another prefix: other blocks
    assert c == [0, 1, 6]  # a shared prefix: the same leading ids


def test_sessions_become_dense_ids_the_loader_reads(tmp_path):
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"timestamp": 0, "session_id": "conv-7", "request": {"prompt": "alpha"}},
            {"timestamp": 1, "request": {"prompt": "bravo", "user": "user-alice"}},
            {"timestamp": 2, "request": {"prompt": "charlie"}},
            {"timestamp": 3, "session_id": 12, "request": {"prompt": "delta", "user": "user-alice"}},
            {"timestamp": 4, "body": {"prompt": "echo", "user": "user-alice"}},
            {"timestamp": 5, "session_id": "conv-7", "prompt": "golf"},  # a bare body: the line itself
        ],
    )
    converted = convert_log(log, block_size=4)
    assert [r.session_id for r in converted.rows] == [0, 1, None, 2, 1, 0] and converted.sessions == 3
    out = tmp_path / "trace.jsonl"
    out.write_text("".join(r.json_line() for r in converted.rows))
    trace = load_trace(str(out), block_size=4)
    assert [trace.session_id(i) for i in range(6)] == [0, 1, None, 2, 1, 0]


def test_output_length_is_usage_then_max_tokens_then_the_default(tmp_path):
    chat = {"messages": [{"role": "user", "content": "alpha"}]}
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {
                "timestamp": 0,
                "request": chat | {"max_tokens": 9},
                "response": {"usage": {"completion_tokens": 4}},
            },
            {"timestamp": 1, "request": chat | {"max_tokens": 9, "max_completion_tokens": 11}},
            {"timestamp": 2, "request": chat | {"max_tokens": 9}, "response": {"usage": None}},
            {"timestamp": 3, "request": chat, "response": {"error": {"message": "overloaded"}}},
            {"timestamp": 4, "request": chat, "response": {"usage": {"completion_tokens": 0}}},
        ],
    )
    converted = convert_log(log, block_size=4, output_tokens=77)
    assert [r.output_length for r in converted.rows] == [4, 11, 9, 77, 1]
    assert (converted.output_from_usage, converted.output_from_max_tokens, converted.output_defaulted) == (
        2,
        2,
        1,
    )


def test_arrivals_are_sorted_milliseconds_from_the_first_whatever_the_stamp(tmp_path):
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"timestamp": "2025-06-01T12:00:01.5Z", "request": {"prompt": "alpha"}},
            {"timestamp": "2025-06-01T14:00:00+02:00", "request": {"prompt": "bravo"}},
            {"created": 1748779203, "request": {"prompt": "charlie"}},
            {"timestamp": "1748779202.25", "request": {"prompt": "delta"}},
            {"timestamp": "2025-06-01T12:00:00", "request": {"prompt": "golf"}},  # naive: UTC
        ],
    )
    rows = convert_log(log, block_size=4).rows
    assert [r.timestamp_ms for r in rows] == [0, 0, 1500, 2250, 3000]
    assert [r.input_length for r in rows] == [1, 1, 1, 1, 1]


def test_word_tokens_count_as_the_twin_estimates():
    for text in (
        "alpha bravo",
        "Hello, world! It's 2025: internationalization (i18n) costs 4 tokens.",
        "naïve café ünïcödé_snake_case\n\ttabs and    spaces",
        "x" * 23,
    ):
        assert len(word_tokens(text)) == estimate_prompt_tokens(text), text
    assert word_tokens("internationalization!") == ["inter", "natio", "naliz", "ation", "!"]


def test_a_tokenizer_counts_exactly(tmp_path, monkeypatch):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {w: i for i, w in enumerate(["[UNK]", *VOCAB, "internationalization"])}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    (tmp_path / "tok").mkdir()
    tokenizer.save(str(tmp_path / "tok" / "tokenizer.json"))
    prompt = "alpha internationalization bravo"
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"timestamp": 0, "request": {"prompt": prompt}},
            {"timestamp": 1, "request": {"prompt": [vocab["alpha"], vocab["internationalization"], 1]}},
            {"timestamp": 2, "request": {"messages": [{"role": "user", "content": prompt}]}},
        ],
    )
    assert [r.input_length for r in convert_log(log, block_size=2).rows] == [6, 3, 7]  # 1 + 4 + 1 words
    for where in ("tok", "tok/tokenizer.json"):
        rows = convert_log(log, block_size=2, tokenize=load_tokenizer(str(tmp_path / where))).rows
        assert [r.input_length for r in rows] == [3, 3, 4]
        assert rows[1].hash_ids[0] == rows[0].hash_ids[0]  # the ids of text and the ids logged are the same
    with pytest.raises(SpecError, match=r"no tokenizer\.json"):
        load_tokenizer(str(tmp_path))
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(SpecError, match=r"pip install 'servewise\[tokenizer\]'"):
        load_tokenizer(str(tmp_path / "tok"))


def test_tools_and_tool_calls_count_and_are_shared_as_a_prefix(tmp_path):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]
    first = [{"role": "user", "content": [{"type": "text", "text": "alpha bravo"}, {"type": "image_url"}]}]
    second = [
        *first,
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "content": "ok"},
    ]
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"timestamp": 0, "request": {"messages": first, "tools": tools}},
            {"timestamp": 1, "request": {"messages": second, "tools": tools}},
        ],
    )
    a, b = convert_log(log, block_size=8).rows
    assert a.input_length > 3 + 8  # the tools, a role token and two words
    assert (
        b.input_length > a.input_length + 2
        and b.hash_ids[: a.input_length // 8] == a.hash_ids[: a.input_length // 8]
    )


# --- bad input ---------------------------------------------------------------------------------------------

OK = '{"timestamp": 0, "request": {"prompt": "alpha"}}\n'

BAD = [
    ("not json", OK + '{"timestamp": 1,\n', 2, "JSON"),
    ("not an object", OK + "[1]\n", 2, "JSON object"),
    ("no body", OK + '{"timestamp": 1, "response": {}}\n', 2, "request"),
    ("body not an object", '{"timestamp": 1, "request": "alpha"}\n', 1, "request"),
    ("neither messages nor prompt", '{"timestamp": 1, "body": {"input": "alpha"}}\n', 1, "body.messages"),
    ("messages not a list", '{"timestamp": 1, "request": {"messages": "alpha"}}\n', 1, "request.messages"),
    ("message without role", '{"timestamp": 1, "request": {"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}}\n', 1, "request.messages[1]"),
    ("bad content", '{"timestamp": 1, "request": {"messages": [{"role": "user", "content": 5}]}}\n', 1, "request.messages[0].content"),
    ("batch", '{"timestamp": 1, "request": {"prompt": ["alpha", "bravo"]}}\n', 1, "batch of 2 prompts"),
    ("bad prompt", '{"timestamp": 1, "request": {"prompt": {"text": "alpha"}}}\n', 1, "request.prompt"),
    ("empty prompt", '{"timestamp": 1, "request": {"prompt": "  "}}\n', 1, "request.prompt: holds no tokens"),
    ("empty messages", '{"timestamp": 1, "request": {"messages": []}}\n', 1, "request.messages: holds no tokens"),
    ("bad max_tokens", '{"timestamp": 1, "request": {"prompt": "a", "max_tokens": 0}}\n', 1, "request.max_tokens"),
    ("bad completion_tokens", '{"timestamp": 1, "request": {"prompt": "a"}, "response": {"usage": {"completion_tokens": "7"}}}\n', 1, "response.usage.completion_tokens"),
    ("bad prompt_tokens", '{"timestamp": 1, "request": {"prompt": "a"}, "response": {"usage": {"prompt_tokens": -1}}}\n', 1, "response.usage.prompt_tokens"),
    ("bad response", '{"timestamp": 1, "request": {"prompt": "a"}, "response": "ok"}\n', 1, "response"),
    ("missing timestamp", OK + '{"request": {"prompt": "a"}}\n', 2, "timestamp"),
    ("bad timestamp", '{"timestamp": "noon", "request": {"prompt": "a"}}\n', 1, "timestamp"),
    ("bad created", '{"created": true, "request": {"prompt": "a"}}\n', 1, "created"),
    ("bad session", '{"timestamp": 1, "session_id": [1], "request": {"prompt": "a"}}\n', 1, "session_id"),
    ("bad user", '{"timestamp": 1, "request": {"prompt": "a", "user": {"id": 1}}}\n', 1, "request.user"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "line", "field"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_line_is_one_message_naming_file_line_and_field(tmp_path, case, text, line, field):
    path = tmp_path / "log.jsonl"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        convert_log(str(path), block_size=4)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and f"line {line}:" in message and field in message, message


def test_a_bad_log_exits_2_and_leaves_the_old_trace_alone(app, tmp_path):
    out = tmp_path / "trace.jsonl"
    out.write_text("the trace from before\n")
    log = tmp_path / "log.jsonl"
    log.write_text(OK + '{"timestamp": 1, "request": {"prompt": "a", "max_tokens": -2}}\n')
    result = CliRunner().invoke(app, ["trace", "from-log", str(log), "-o", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "line 2: request.max_tokens" in " ".join(result.output.split())
    assert out.read_text() == "the trace from before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "trace.jsonl"]  # no temporary left


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_an_empty_log_says_so(app, tmp_path, text):
    log = tmp_path / "log.jsonl"
    log.write_text(text)
    out = tmp_path / "trace.jsonl"
    result = CliRunner().invoke(app, ["trace", "from-log", str(log), "-o", str(out)])
    assert result.exit_code == 2 and f"log {log} has no requests" in " ".join(result.output.split())
    assert not out.exists()


def test_the_log_is_never_overwritten_nor_a_missing_one_read(app, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(OK)
    result = CliRunner().invoke(app, ["trace", "from-log", str(log), "-o", str(log)])
    assert result.exit_code == 2 and "overwrite the log" in result.output and log.read_text() == OK
    missing = CliRunner().invoke(app, ["trace", "from-log", str(tmp_path / "nope.jsonl"), "-o", "x.jsonl"])
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_from_log_help_teaches_the_log_format(app):
    result = CliRunner().invoke(app, ["trace", "from-log", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.output
    assert "servewise trace from-log gateway.jsonl -o shareable.jsonl" in text
    assert '"request":{"messages":[{"role":"user","content":"hi"}],"max_tokens":64}' in text
    assert "usage.completion_tokens" in text and "request.user" in text and "salted" in text
    assert max(len(line) for line in text.splitlines()) <= 80


# --- replay ------------------------------------------------------------------------------------------------


def test_the_converted_trace_replays_with_bench(timing_url, store_path, tmp_path):
    rng = random.Random(11)
    requests = agent_log(rng, system_words=600)[:9]  # three chats, 600-word system prompts: one shared block
    log = shuffled_log(tmp_path / "gateway.jsonl", [(at / 10, e) for at, e in requests], rng)
    out = tmp_path / "trace.jsonl"
    converted = servewise("trace", "from-log", log, "-o", str(out), "--json")
    assert converted.code == 0, converted.stderr
    summary = converted.json()["trace"]
    assert summary["theoretical_prefix_hit_rate"] > 0.3
    result = servewise(
        "bench", "--target", timing_url, "--quiet", "--json", "-", "--trace", str(out), "--no-telemetry",
        store=store_path,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    m = result.json()["metrics"]
    assert result.json()["load"] == "trace replay" and m["requests_ok"] == 9 and m["requests_failed"] == 0
    assert m["mean_input_tokens"] == pytest.approx(summary["input_tokens"]["mean"])
    assert m["cache"]["theoretical_hit_rate"] == pytest.approx(summary["theoretical_prefix_hit_rate"])
