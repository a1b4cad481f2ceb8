"""Each API's adapter on its own: the bytes it sends, how it reads what real servers stream (split anywhere),
and the one line it gives when a server answers another API's shape."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from servewise.protocols import adapter_for
from servewise.records import ErrorClass, RequestRecord, TokenSource
from servewise.spec import WorkloadSpec, parse_length
from servewise.spec.errors import SpecError
from servewise.spec.models import TargetSpec
from servewise.workload import WorkloadPlan
from servewise.workload.plan import PlannedRequest

CHAT = [b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n']
ANTHROPIC = [
    b'event: message_start\ndata: {"type":"message_start","message":{"type":"message","usage":'
    b'{"input_tokens":3,"cache_read_input_tokens":10,"cache_creation_input_tokens":2,"output_tokens":1}}}\n\n',
    b'event: ping\ndata: {"type":"ping"}\n\n',
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n',
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}\n\n',
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}\n\n',
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":" world"}}\n\n',
    b'data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":5}}\n\n',
    b'data: {"type":"message_stop"}\n\n',
]
RESPONSES = [
    b'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","status":"in_progress"}}\n\n',
    b'data: {"type":"response.reasoning_text.delta","delta":"think"}\n\n',
    b'data: {"type":"response.output_text.delta","delta":"Hi"}\n\n',
    b'data: {"type":"response.output_text.delta","delta":" there"}\n\n',
    b'data: {"type":"response.completed","response":{"id":"resp_1","status":"incomplete","incomplete_details":'
    b'{"reason":"max_output_tokens"},"usage":{"input_tokens":9,"output_tokens":4,"input_tokens_details":'
    b'{"cached_tokens":6},"output_tokens_details":{"reasoning_tokens":1}}}}\n\n',
]


def _target(api: str, **extra: object) -> TargetSpec:
    return TargetSpec(url="http://h:1", api=api, ignore_eos=False, **extra)


def _planned(
    prompt: str | None = "one two three four five six seven eight nine", messages=None, session: int | None = None
) -> PlannedRequest:
    return PlannedRequest(index=0, prompt=prompt, messages=messages, input_tokens=None, max_tokens=5,
                          session=session)  # fmt: skip


def _read(api: str, pieces: list[bytes], *, split: int | None = None, collect: bool = False, **extra: object):
    adapter = adapter_for(_target(api, **extra), "m", None)
    reader = adapter.reader(collect)
    body = b"".join(pieces)
    parts = [body[i : i + split] for i in range(0, len(body), split)] if split else pieces
    for t, part in enumerate(parts, start=1):
        reader.feed(part, float(t))
    record = RequestRecord(index=0, t_sched=0.0, t_end=float(len(parts) + 1))
    reader.finish(record)
    return record, reader


def _head_and_body(raw: bytes) -> tuple[str, dict]:
    head, body = raw.split(b"\r\n\r\n", 1)
    return head.decode(), json.loads(body)


@pytest.mark.parametrize("split", [None, 1, 7])
def test_anthropic_stream_usage_reasoning_and_cache(split):
    record, reader = _read("anthropic", ANTHROPIC, split=split, collect=True)
    assert record.ok and record.output_tokens == 5 and record.output_tokens_source is TokenSource.USAGE
    assert record.input_tokens == 15 and record.cached_tokens == 10  # reads + writes + the rest
    assert record.finish_reason == "max_tokens" and len(record.chunk_times) == 3
    assert record.t_answer is not None and record.t_first is not None and record.t_answer > record.t_first
    assert record.reasoning_tokens == 1 and reader.text == "Hello world"


def test_anthropic_request_headers_and_system():
    adapter = adapter_for(_target("anthropic"), "m", "sk-secret")
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    head, body = _head_and_body(adapter.request_bytes(_planned(None, messages)))
    assert head.startswith("POST /v1/messages HTTP/1.1") and "x-api-key: sk-secret" in head
    assert "anthropic-version: 2023-06-01" in head and "Authorization" not in head
    assert body == {
        "model": "m",
        "max_tokens": 5,
        "messages": [messages[1]],
        "system": "be brief",
        "stream": True,
    }


def test_anthropic_whole_message():
    answer = {"type": "message", "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
              "usage": {"input_tokens": 4, "output_tokens": 2, "cache_read_input_tokens": 3}}  # fmt: skip
    record, reader = _read("anthropic", [json.dumps(answer).encode()], stream=False)
    assert record.ok and record.output_tokens == 2 and record.input_tokens == 7 and record.cached_tokens == 3
    assert reader.text == "ok" and record.t_first == 1.0


@pytest.mark.parametrize("split", [None, 3])
def test_responses_stream(split):
    record, reader = _read("responses", RESPONSES, split=split, collect=True)
    assert record.ok and record.output_tokens == 4 and record.input_tokens == 9 and record.cached_tokens == 6
    assert record.reasoning_tokens == 1 and record.finish_reason == "max_output_tokens"
    assert len(record.chunk_times) == 3 and reader.text == "Hi there"


def test_responses_later_turn_sends_previous_response_id_and_only_the_new_message():
    adapter = adapter_for(_target("responses"), "m", None)
    first = [{"role": "user", "content": "q1"}]
    _, body = _head_and_body(adapter.request_bytes(_planned(None, first, session=7)))
    assert body["input"] == first and "previous_response_id" not in body
    for session, response_id in ((7, "resp_1"), (8, "resp_8")):  # two conversations, the same answer text
        reader = adapter.reader(collect_text=True)
        for t, piece in enumerate(RESPONSES):
            reader.feed(piece.replace(b"resp_1", response_id.encode()), float(t))
        reader.finish(RequestRecord(index=0, t_sched=0.0, t_end=9.0, session=session, turn=1))
    second = [*first, {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "q2"}]
    _, body = _head_and_body(adapter.request_bytes(_planned(None, second, session=7)))
    assert body["previous_response_id"] == "resp_1" and body["input"] == [second[-1]]
    _, body = _head_and_body(adapter.request_bytes(_planned(None, second, session=8)))
    assert body["previous_response_id"] == "resp_8"
    # a history that does not end with the conversation's last answer (a trace's own assistant text, a turn
    # already chained): the whole history goes out instead
    other = [*first, {"role": "assistant", "content": "unknown"}, {"role": "user", "content": "q2"}]
    for session in (7, 9):
        _, body = _head_and_body(adapter.request_bytes(_planned(None, other, session=session)))
        assert "previous_response_id" not in body and body["input"] == other


def test_rerank_request_and_answer():
    adapter = adapter_for(_target("rerank", documents=3), "m", None)
    head, body = _head_and_body(adapter.request_bytes(_planned()))
    assert head.startswith("POST /v1/rerank ") and body["query"] == "one two"
    assert body["documents"] == ["three four", "five six", "seven eight"]
    results = {
        "results": [{"index": i, "relevance_score": 0.5} for i in range(3)],
        "usage": {"total_tokens": 12},
    }
    record, _ = _read("rerank", [json.dumps(results).encode()], documents=3)
    assert record.ok and record.input_tokens == 12 and record.output_tokens == 0
    short = {"results": [{"index": 0, "relevance_score": 0.5}]}
    record, _ = _read("rerank", [json.dumps(short).encode()], documents=3)
    assert record.error is ErrorClass.PROTOCOL and "scored 1 of 3 documents" in record.error_detail


def test_rerank_route_for_cohere_style_servers():
    adapter = adapter_for(_target("rerank", route="/rerank"), "m", None)
    assert adapter.request_bytes(_planned()).startswith(b"POST /rerank HTTP/1.1")


def test_images_request_and_answer():
    adapter = adapter_for(_target("images", image={"size": "64x64", "n": 2, "steps": 1}), "m", None)
    head, body = _head_and_body(adapter.request_bytes(_planned("a red fox")))
    assert head.startswith("POST /v1/images/generations ") and body["prompt"] == "a red fox"
    assert (body["size"], body["n"], body["steps"]) == ("64x64", 2, 1)
    two = {"data": [{"b64_json": "AAAA"}, {"b64_json": "BBBB"}]}
    record, _ = _read("images", [json.dumps(two).encode()], image={"n": 2})
    assert record.ok and record.t_first == 1.0
    record, _ = _read("images", [json.dumps(two).encode()], image={"n": 3})
    assert record.error is ErrorClass.PROTOCOL and "2 of the 3 images" in record.error_detail
    assert "steps" not in adapter_for(_target("images"), "m", None).body(_planned())  # only when given
    sd_cpp = adapter_for(_target("images", image={"steps": 4, "steps_as": "sd_cpp_extra_args"}), "m", None)
    body = sd_cpp.body(_planned("a red fox"))  # sd-server reads steps only from the prompt, and strips them
    assert "steps" not in body
    assert body["prompt"] == 'a red fox <sd_cpp_extra_args>{"sample_params": {"sample_steps": 4}}</sd_cpp_extra_args>'


HTTP = {"body": '{"inputs": {{ prompt|tojson }}, "parameters": {"max_new_tokens": {{ max_tokens }}}}',
        "text_path": "token.text", "output_tokens_path": "details.generated_tokens"}  # fmt: skip


def test_http_template_streamed_and_whole():
    adapter = adapter_for(_target("http", route="/generate_stream", http=HTTP), "m", None)
    head, body = _head_and_body(adapter.request_bytes(_planned('say "hi"')))
    assert head.startswith("POST /generate_stream ") and body == {
        "inputs": 'say "hi"',
        "parameters": {"max_new_tokens": 5},
    }
    events = [
        b'data: {"token": {"text": "a"}}\n\n',
        b'data: {"token": {"text": "b"}, "details": {"generated_tokens": 2}}\n\n',
    ]
    record, reader = _read("http", events, collect=True, http=HTTP)
    assert record.ok and len(record.chunk_times) == 2 and record.output_tokens == 2 and reader.text == "ab"
    whole = HTTP | {"text_path": "0.generated_text"}
    record, _ = _read("http", [b'{"generated_text": "x"}'], stream=False, http=whole)
    assert record.error is ErrorClass.PROTOCOL and "0.generated_text" in record.error_detail
    record, reader = _read(
        "http", [b'{"generated_text": "x y"}'], stream=False, http=HTTP | {"text_path": "generated_text"}
    )
    assert record.ok and reader.text == "x y" and record.output_tokens_source is TokenSource.CHUNKS


def test_http_template_refused_before_a_run():
    with pytest.raises(ValidationError, match="does not render to JSON"):
        _target("http", http={"body": "{{ prompt }}", "text_path": "t"})
    with pytest.raises(ValidationError, match="does not render"):
        _target("http", http={"body": '{"a": {{ nothing_here }}}', "text_path": "t"})
    with pytest.raises(ValidationError, match=r"needs target\.http"):
        _target("http")


def test_per_request_headers_from_the_workload():
    target = _target(
        "chat", headers={"x-session-affinity": "{session}", "x-tenant": "{tenant}", "x-team": "ml"}
    )
    adapter = adapter_for(target, "m", "k")
    planned = PlannedRequest(
        index=0, prompt="p", messages=None, input_tokens=None, max_tokens=3, session=7, tenant="acme"
    )
    head, body = _head_and_body(adapter.request_bytes(planned))
    lines = head.split("\r\n")
    assert lines[0].startswith("POST /v1/chat/completions") and "x-session-affinity: 7" in lines
    assert (
        "x-tenant: acme" in lines
        and "x-team: ml" in lines
        and body["prompt" if "prompt" in body else "messages"]
    )
    head, _ = _head_and_body(adapter.request_bytes(_planned()))
    assert (
        "x-session-affinity" not in head and "x-tenant" not in head and "x-team: ml" in head
    )  # unknown: left out
    with pytest.raises(ValidationError, match="one-line value"):
        _target("chat", headers={"x-bad": "a\r\nInjected: 1"})
    for secret in ("Authorization", "x-api-key", "Cookie"):  # the spec is stored: a key goes by api_key_env
        with pytest.raises(ValidationError, match="carries a secret"):
            _target("chat", headers={secret: "Bearer sk-123"})


@pytest.mark.parametrize(
    ("api", "answer", "named"),
    [
        ("anthropic", CHAT, "OpenAI chat completions"),
        ("responses", ANTHROPIC, "Anthropic Messages"),
        ("chat", RESPONSES, "OpenAI Responses"),
        ("rerank", [b'{"object":"list","data":[{"embedding":[0.1]}]}'], "OpenAI embeddings"),
        ("images", [b'{"results":[{"index":0,"relevance_score":1}]}'], "rerank"),
        ("embeddings", [b'{"data":[{"b64_json":"AAAA"}]}'], "OpenAI images"),
    ],
)
def test_another_apis_shape_is_named(api, answer, named):
    record, _ = _read(api, answer)
    assert record.error is ErrorClass.PROTOCOL and f"answered with {named}" in record.error_detail
    assert "check --api" in record.error_detail and "\n" not in record.error_detail


def test_a_dataset_lines_tenant_and_priority_reach_the_headers(tmp_path):
    def plan(lines: str) -> WorkloadPlan:
        (tmp_path / "d.jsonl").write_text(lines)
        dataset = {"path": str(tmp_path / "d.jsonl"), "shuffle": False}
        return WorkloadPlan(WorkloadSpec(dataset=dataset, output_tokens=parse_length("4")))

    lines = plan('{"prompt": "a", "tenant": "acme", "priority": 2}\n{"prompt": "b"}\n')
    adapter = adapter_for(_target("rerank", documents=1, headers={"x-tenant": "{tenant}", "x-priority": "{priority}"}),
                          "m", None)  # fmt: skip
    first, _ = _head_and_body(adapter.request_bytes(lines.request(0)))
    second, _ = _head_and_body(adapter.request_bytes(lines.request(1)))
    assert "\r\nx-tenant: acme\r\nx-priority: 2\r\n" in first and "x-tenant" not in second
    with pytest.raises(SpecError, match="line 1: tenant must be a one-line string or an integer"):
        plan('{"prompt": "c", "tenant": true}\n')


@pytest.mark.parametrize("kind", ["jsonl", "mooncake", "csv"])
def test_a_trace_lines_tenant_and_priority_reach_the_headers(tmp_path, kind):
    """A replayed trace carries who sent each request as a dataset does: a tenant's quota or a priority class
    is part of what production's gateway sees, so the replay sends it too."""
    body = {
        "jsonl": '{"timestamp": 0, "input_tokens": 8, "output_tokens": 2, "tenant": "acme", "priority": 2}\n'
        '{"timestamp": 0.5, "input_tokens": 8, "output_tokens": 2}\n',
        "mooncake": '{"timestamp": 0, "input_length": 8, "output_length": 2, "hash_ids": [1], "tenant": "acme",'
        ' "priority": 2}\n{"timestamp": 500, "input_length": 8, "output_length": 2, "hash_ids": [2]}\n',
        "csv": "timestamp,input_tokens,output_tokens,tenant,priority\n0,8,2, acme ,2\n0.5,8,2,,\n",
    }[kind]
    path = tmp_path / f"t.{'csv' if kind == 'csv' else 'jsonl'}"
    path.write_text(body)
    plan = WorkloadPlan(WorkloadSpec(trace={"path": str(path)}))
    adapter = adapter_for(_target("chat", headers={"x-tenant": "{tenant}", "x-priority": "{priority}"}), "m", None)
    first, _ = _head_and_body(adapter.request_bytes(plan.request(0)))
    second, _ = _head_and_body(adapter.request_bytes(plan.request(1)))
    assert "\r\nx-tenant: acme\r\nx-priority: 2\r\n" in first and "x-tenant" not in second
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_tokens": 8, "output_tokens": 2, "priority": 1.5}\n')
    with pytest.raises(SpecError, match=r"bad.jsonl, line 1: priority must be a one-line string or an integer$"):
        WorkloadPlan(WorkloadSpec(trace={"path": str(bad)}))


def test_an_event_of_no_known_api_is_let_pass():
    """A newer event type of the same API (or a keep-alive) is not another API's answer: it is skipped."""
    extra = b'data: {"type":"keepalive"}\n\n'
    for api, events in (("anthropic", ANTHROPIC), ("responses", RESPONSES)):
        record, reader = _read(api, [events[0], extra, *events[1:]], collect=True)
        assert record.ok and reader.text in ("Hello world", "Hi there"), record.error_detail
    record, _ = _read("chat", [b'data: {"id":"x","created":1}\n\n', *CHAT])
    assert record.ok and len(record.chunk_times) == 1


def test_what_an_api_sends_is_part_of_the_workload_a_gate_compares():
    """Eight documents a request against two, or 1024-pixel images against 512: different traffic."""
    from servewise.analysis.run_fingerprint import diff_fingerprints, workload_shape

    def shape(**target: object) -> dict[str, str]:
        return workload_shape({"target": {"url": "http://h:1", **target}})

    differences = diff_fingerprints(shape(api="rerank", documents=8), shape(api="rerank", documents=2))
    assert [d.field for d in differences] == ["target.documents"]
    images = diff_fingerprints(shape(api="images", image={"size": "512x512"}), shape(api="images", image={"size": "1024x1024"}))
    assert [d.field for d in images] == ["target.image.size"]
    assert shape(api="chat", documents=8) == shape(api="chat")  # not what a chat request carries
