"""Stream reading as real servers write it: usage anywhere or nowhere, [DONE] or not, odd framing."""

from __future__ import annotations

import json

from servewise.protocols.endpoint import api_base_path
from servewise.protocols.openai import BodyReader, StreamReader
from servewise.records import ErrorClass, RequestRecord, TokenSource
from servewise.spec.models import Api


def _event(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(content=None, finish=None, usage=None, role=False):
    delta = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        event["usage"] = usage
    return _event(event)


def _read(pieces: list[bytes], split_every: int | None = None) -> RequestRecord:
    reader = StreamReader()
    body = b"".join(pieces)
    parts = [body[i : i + split_every] for i in range(0, len(body), split_every)] if split_every else pieces
    for t, part in enumerate(parts):
        reader.feed(part, float(t))
    record = RequestRecord(index=0, t_sched=0.0, t_send=0.0, t_end=float(len(parts)))
    reader.finish(record)
    return record


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def test_usage_on_its_own_chunk_and_done():
    record = _read(
        [
            _chunk(role=True),
            _chunk("a"),
            _chunk("b"),
            _chunk("c", "length"),
            _event({"choices": [], "usage": USAGE}),
            b"data: [DONE]\n\n",
        ]
    )
    assert record.ok and record.output_tokens == 3 and record.output_tokens_source is TokenSource.USAGE
    assert record.input_tokens == 7 and record.finish_reason == "length"
    assert record.chunk_times == [1.0, 2.0, 3.0] and record.t_first == 1.0


def test_usage_on_finish_chunk_without_done():
    record = _read([_chunk("a"), _chunk("b"), _chunk("c", "stop", usage=USAGE)])
    assert record.ok and record.output_tokens == 3 and record.output_tokens_source is TokenSource.USAGE


def test_no_usage_falls_back_to_chunk_count_marked_estimate():
    record = _read([_chunk("a"), _chunk("b c d"), b"data: [DONE]\n\n"])
    assert record.output_tokens == 2 and record.output_tokens_source is TokenSource.CHUNKS


def test_split_anywhere_and_crlf_framing():
    pieces = [_chunk("a"), _chunk("b"), _event({"choices": [], "usage": USAGE}), b"data: [DONE]\n\n"]
    for size in (1, 3, 17):
        record = _read(pieces, split_every=size)
        assert record.ok and len(record.chunk_times) == 2 and record.output_tokens == 3
    crlf = _read([p.replace(b"\n", b"\r\n") for p in pieces])
    assert crlf.ok and len(crlf.chunk_times) == 2


def test_a_one_megabyte_line_is_read_whole():
    record = _read([_chunk("x" * 1_000_000), _chunk("y", "length"), b"data: [DONE]\n\n"], split_every=65536)
    assert record.ok and len(record.chunk_times) == 2


def test_role_only_and_empty_content_chunks_are_not_content():
    record = _read([_chunk(role=True), _chunk(""), _chunk("a"), b"data: [DONE]\n\n"])
    assert len(record.chunk_times) == 1


def test_malformed_event_is_a_protocol_error():
    record = _read([_chunk("a"), b"data: {not json\n\n"])
    assert record.error is ErrorClass.PROTOCOL and "not JSON" in record.error_detail
    record = _read([_chunk("a"), b"garbage line\n\n"])
    assert record.error is ErrorClass.PROTOCOL


def test_error_event_inside_a_200_stream():
    record = _read([_chunk("a"), _event({"error": {"message": "engine died"}})])
    assert record.error is ErrorClass.PROTOCOL and "engine died" in record.error_detail


def test_empty_stream_is_an_error():
    assert _read([b""]).error is ErrorClass.PROTOCOL


def test_continuous_usage_gives_tokens_per_chunk():
    record = _read(
        [
            _chunk("a", usage={"completion_tokens": 1}),
            _chunk("b c", usage={"completion_tokens": 3}),
            _chunk("d", usage={"completion_tokens": 4}),
        ]
    )
    assert record.chunk_tokens == [1, 2, 1] and record.output_tokens == 4


def test_non_streamed_body():
    reader = BodyReader(Api.CHAT)
    body = {"choices": [{"message": {"content": "hello world"}, "finish_reason": "length"}], "usage": USAGE}
    reader.feed(json.dumps(body).encode(), 5.0)
    record = RequestRecord(index=0, t_sched=0.0, t_end=6.0)
    reader.finish(record)
    assert record.t_first == 5.0 and record.output_tokens == 3 and record.finish_reason == "length"
    reader = BodyReader(Api.EMBEDDINGS)
    reader.feed(b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": 4}}', 1.0)
    record = RequestRecord(index=0, t_sched=0.0)
    reader.finish(record)
    assert record.ok and record.input_tokens == 4


def test_api_base_path():
    assert api_base_path("http://h:1") == "/v1/"
    assert api_base_path("http://h:1/v1") == "/v1/"
    assert api_base_path("http://h:1/proxy/v1/") == "/proxy/v1/"
    assert api_base_path("http://h:1/proxy") == "/proxy/v1/"


def test_request_bytes_template_equals_full_serialisation():
    from servewise.protocols.openai import OpenAIAdapter
    from servewise.spec.models import TargetSpec
    from servewise.workload.plan import PlannedRequest

    request = PlannedRequest(index=1, prompt='quote " backslash \\ tab \t é', messages=None, input_tokens=3, max_tokens=17)
    for target in (
        TargetSpec(url="http://h:1", api="chat"),
        TargetSpec(url="http://h:1/v1", api="completions", stream=False),
        TargetSpec(url="http://h:1", api="chat", extra_body={"temperature": 0}),
        TargetSpec(url="http://h:1", api="chat", extra_body={"max_tokens": 5}),  # overrides: no template
    ):
        adapter = OpenAIAdapter(target, "m", "secret")
        head, body = adapter.request_bytes(request).split(b"\r\n\r\n", 1)
        assert json.loads(body) == adapter.body(request)
        assert f"Content-Length: {len(body)}".encode() in head and b"Authorization: Bearer secret" in head


def test_a_conversations_answer_text_is_collected_exactly_without_decoding_every_chunk():
    """Escapes, non-ASCII and a surrogate pair split over two chunks read back as the server meant them."""
    pieces = [' "quoted"', "\nnew line", " caf\u00e9", " \\ backslash", "\ud83d", "\ude00 done"]
    reader = StreamReader(collect_text=True)
    reader.feed(b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n', 1.0)
    for i, piece in enumerate(pieces):
        chunk = json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}, ensure_ascii=True)
        if i == 2:
            chunk = chunk.replace('"content": ', '"content" :  ')  # spacing some servers use
        reader.feed(b"data: " + chunk.encode() + b"\n\n", 2.0 + i)
    reader.feed(b"data: [DONE]\n\n", 9.0)
    record = RequestRecord(index=0, t_sched=0.0)
    reader.finish(record)
    assert reader.text == ' "quoted"\nnew line caf\u00e9 \\ backslash\U0001f600 done'
    assert len(record.chunk_times) == len(pieces) and record.t_answer == 2.0
