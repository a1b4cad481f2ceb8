"""The measured hot path: HTTP/1.1 keep-alive connections on asyncio Protocols, parsed by httptools.

aiohttp tops out near 3,000 streamed requests/s on one core even with no records kept
(../PERFORMANCE-NOTES), so the load itself goes through this lean transport: one Protocol per
connection, llhttp (the parser uvicorn uses) for framing and chunked decoding, and the arrival time
taken first thing in ``data_received``, before any parsing. The pool opens one connection per request
in flight, up to an explicit cap; it never caps silently.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from time import perf_counter

import httptools

from servewise.protocols.openai import ResponseReader
from servewise.records import ErrorClass, RequestRecord

_ERROR_BODY_LIMIT = 2048


class _Exchange:
    """One request in flight on a connection."""

    __slots__ = ("deadline", "reader", "record", "request", "retried")

    def __init__(
        self, record: RequestRecord, request: bytes, reader: ResponseReader, deadline: float
    ) -> None:
        self.record = record
        self.request = request
        self.reader = reader
        self.deadline = deadline
        self.retried = False


class _Connection(asyncio.Protocol):
    __slots__ = ("_error_body", "_exchange", "_now", "_parser", "_pool", "_status", "served", "transport")

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._exchange: _Exchange | None = None
        self._now = 0.0
        self._status = 0
        self._error_body = bytearray()
        self.served = 0
        self.transport: asyncio.Transport | None = None

    # asyncio callbacks ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._now = perf_counter()
        if self._exchange is None:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ErrorClass.PROTOCOL, f"malformed HTTP response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        exchange = self._exchange
        if exchange is not None and self._status == 0 and self.served > 1 and not exchange.retried:
            # the server closed a kept-alive connection as we reused it: resend once, as browsers do, on a
            # new connection (the other idle ones may be closing too: a server's idle timeout ends them
            # together, and a resend on one of them was lost the same way)
            self._exchange = None
            exchange.retried = True
            self._pool._resend(
                exchange, fresh=True
            )  # before forgetting this one: it keeps its place in the cap
            self._pool._forget(self)
            return
        if self._exchange is not None:
            detail = f"connection closed mid-response ({exc})" if exc else "connection closed mid-response"
            got_response = self._status != 0
            self._finish(ErrorClass.PROTOCOL if got_response else ErrorClass.CONNECT, detail, reusable=False)
        self._pool._forget(self)

    # httptools callbacks --------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._exchange is not None:
            self._exchange.record.status = self._status

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        if self._status == 200:
            exchange.reader.feed(body, self._now)
        elif len(self._error_body) < _ERROR_BODY_LIMIT:
            self._error_body += body[: _ERROR_BODY_LIMIT - len(self._error_body)]

    def on_message_complete(self) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        exchange.record.t_end = self._now
        reusable = (
            self._parser.should_keep_alive()
            and self.transport is not None
            and not self.transport.is_closing()
        )
        if self._status == 200:
            exchange.reader.finish(exchange.record)
            self._finish(None, "", reusable)
        else:
            body = bytes(self._error_body).decode("utf-8", "replace").strip()
            self._finish(ErrorClass.HTTP_STATUS, f"HTTP {self._status}: {body[:300]}", reusable)
        if not reusable and self.transport is not None:
            self.transport.close()

    # pool interface -------------------------------------------------------------------------

    def send(self, exchange: _Exchange) -> None:
        self.served += 1
        self._exchange = exchange
        self._status = 0
        self._error_body.clear()
        exchange.record.t_send = perf_counter()
        self.transport.write(exchange.request)  # type: ignore[union-attr]

    def _finish(self, error: ErrorClass | None, detail: str, reusable: bool) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is None:
            return
        record = exchange.record
        if error is not None:
            record.error, record.error_detail = error, detail
            if record.t_end is None:
                record.t_end = perf_counter()
        self._pool._done(self, record, reusable)

    def _fail(self, error: ErrorClass, detail: str) -> None:
        self._finish(error, detail, reusable=False)
        if self.transport is not None:
            self.transport.abort()


class ConnectionPool:
    """Keep-alive connections to one host; one per request in flight up to ``max_connections``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        timeout_s: float,
        on_complete: Callable[[RequestRecord], None],
        max_connections: int | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self._host, self._port = host, port
        self._ssl = ssl.create_default_context() if tls else None
        self._timeout = timeout_s
        self._connect_timeout = min(connect_timeout_s, timeout_s)
        self._on_complete = on_complete
        self._max = max_connections
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._opening = 0
        self._waiting: deque[_Exchange] = deque()
        self._closed = False
        self.opened = 0
        self.waited = 0
        self._loop = asyncio.get_running_loop()
        self._reaper = self._loop.call_later(0.1, self._reap)

    @property
    def in_flight(self) -> int:
        return len(self._busy) + self._opening + len(self._waiting)

    @property
    def connections(self) -> int:
        return len(self._idle) + len(self._busy) + self._opening

    def submit(self, record: RequestRecord, request: bytes, reader: ResponseReader) -> None:
        """Send now on an idle connection, or open one, or (at the cap) queue in order."""
        self._resend(_Exchange(record, request, reader, 0.0))

    def _resend(self, exchange: _Exchange, *, fresh: bool = False) -> None:
        idle = self._idle
        while idle and (idle[-1].transport is None or idle[-1].transport.is_closing()):
            idle.pop()
        if idle and not fresh:
            self._start(idle.pop(), exchange)
        elif fresh or self._max is None or self.connections < self._max:
            self._opening += 1
            self._loop.create_task(self._open(exchange))
        else:
            self.waited += 1
            self._waiting.append(exchange)

    def _start(self, connection: _Connection, exchange: _Exchange) -> None:
        self._busy.add(connection)
        exchange.deadline = perf_counter() + self._timeout
        connection.send(exchange)

    async def _open(self, exchange: _Exchange) -> None:
        try:
            _, connection = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: _Connection(self), self._host, self._port, ssl=self._ssl
                ),
                self._connect_timeout,
            )
        except TimeoutError:
            self._opening -= 1
            self._fail_unsent(exchange, ErrorClass.CONNECT, f"connect to {self._host}:{self._port} timed out")
            return
        except OSError as exc:
            self._opening -= 1
            self._fail_unsent(
                exchange, ErrorClass.CONNECT, f"connect to {self._host}:{self._port}: {exc.strerror or exc}"
            )
            return
        except asyncio.CancelledError:
            self._opening -= 1
            self._fail_unsent(exchange, ErrorClass.CANCELLED, "cancelled while connecting")
            raise
        self.opened += 1
        self._opening -= 1
        if self._closed or connection.transport is None or connection.transport.is_closing():
            connection.transport.close()  # type: ignore[union-attr]
            self._fail_unsent(
                exchange,
                ErrorClass.CANCELLED if self._closed else ErrorClass.CONNECT,
                "run stopped" if self._closed else "connection closed right after it opened",
            )
            return
        self._start(connection, exchange)

    def _fail_unsent(self, exchange: _Exchange, error: ErrorClass, detail: str) -> None:
        record = exchange.record
        record.t_send = record.t_end = perf_counter()
        record.error, record.error_detail = error, detail
        self._on_complete(record)

    def _done(self, connection: _Connection, record: RequestRecord, reusable: bool) -> None:
        """Free the connection first (so ``in_flight`` is already right), then report the record."""
        self._busy.discard(connection)
        if reusable and not self._closed:
            if self._waiting:
                self._start(connection, self._waiting.popleft())
            else:
                self._idle.append(connection)
        self._on_complete(record)

    def _forget(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        if self._waiting and not self._closed and (self._max is None or self.connections < self._max):
            self._opening += 1
            self._loop.create_task(self._open(self._waiting.popleft()))

    def _reap(self) -> None:
        """Time out overdue requests; one sweep every 100 ms costs less than a timer per request."""
        now = perf_counter()
        for connection in list(self._busy):
            exchange = connection._exchange
            if exchange is not None and now > exchange.deadline:
                connection._fail(ErrorClass.TIMEOUT, f"no complete response within {self._timeout:g}s")
        if not self._closed:
            self._reaper = self._loop.call_later(0.1, self._reap)

    def close(self, reason: str = "run stopped") -> None:
        """Cancel everything still in flight (recorded as cancelled) and close every connection."""
        self._closed = True
        self._reaper.cancel()
        while self._waiting:
            self._fail_unsent(self._waiting.popleft(), ErrorClass.CANCELLED, reason)
        for connection in list(self._busy):
            if connection._exchange is not None:
                connection._fail(ErrorClass.CANCELLED, reason)
        for connection in self._idle:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
