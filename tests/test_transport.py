"""The connection pool against servers that close connections the way real ones do."""

from __future__ import annotations

import asyncio

from servewise.engine.transport import ConnectionPool
from servewise.protocols.openai import StreamReader
from servewise.records import ErrorClass, Phase, RequestRecord

_BODY = b'data: {"choices":[{"index":0,"delta":{"content":" hi"}}]}\n\ndata: [DONE]\n\n'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)
_REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


class _OneAnswerPerConnection(asyncio.Protocol):
    """Answers the first request of a connection with keep-alive, then closes at the next one unanswered:
    what a server's idle timeout does to a connection the client reuses at that moment."""

    answer_first = True

    def __init__(self) -> None:
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.requests += 1
        if self.requests == 1 and self.answer_first:
            self.transport.write(_RESPONSE)
        else:
            self.transport.close()


class _NeverAnswers(_OneAnswerPerConnection):
    answer_first = False


async def _exchange_all(protocol: type[asyncio.Protocol], batches: list[int]) -> tuple[list[RequestRecord], int]:
    """Send ``batches`` of concurrent requests, one batch after the other; the records and connections opened."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    done: list[RequestRecord] = []
    pool = ConnectionPool("127.0.0.1", port, tls=False, timeout_s=5.0, on_complete=done.append)
    index = 0
    try:
        for size in batches:
            expected = len(done) + size
            for _ in range(size):
                record = RequestRecord(index=index, t_sched=0.0, max_tokens=1, worker=0, phase=Phase.STEADY)
                pool.submit(record, _REQUEST, StreamReader())
                index += 1
            async with asyncio.timeout(5):
                while len(done) < expected:
                    await asyncio.sleep(0.01)
    finally:
        pool.close()
        server.close()
    return done, pool.opened


def test_a_request_lost_on_a_reused_connection_is_resent_on_a_new_one() -> None:
    """Two idle connections both closing: the resend must not go to the other one (it was lost there too)."""
    records, opened = asyncio.run(_exchange_all(_OneAnswerPerConnection, [2, 1]))
    assert [r.error for r in records] == [None, None, None], [r.error_detail for r in records]
    assert opened == 3


def test_a_new_connection_closed_unanswered_is_an_error_not_resent() -> None:
    """Only a reused connection can have been closed by an idle timeout; a new one closed is the server's failure."""
    records, opened = asyncio.run(_exchange_all(_NeverAnswers, [1]))
    assert records[0].error is ErrorClass.CONNECT
    assert "closed mid-response" in (records[0].error_detail or "")
    assert opened == 1
