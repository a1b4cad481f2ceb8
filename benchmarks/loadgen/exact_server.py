"""An OpenAI chat streaming server with exact delays, for measuring a client's TTFT error.

One thread per keep-alive connection, blocking sockets and ``time.sleep`` (clock_nanosleep, ~0.1 ms
slack) instead of an event loop whose timers round to a millisecond. Headers go out at once; the role
chunk and the first content chunk go out together ``--ttft-ms`` after the request is read, then one
content chunk every ``--itl-ms``, then a usage chunk and ``[DONE]`` (chunked transfer encoding).
The first content chunk is therefore due exactly at TTFT; what a client reads above it is loopback +
the client's own delay.

Run: python exact_server.py --port 18123 --ttft-ms 100 --itl-ms 10
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import time

MODEL = "timing-model"


def event(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body: dict = {"id": "chatcmpl-exact", "object": "chat.completion.chunk", "created": 0, "model": MODEL}
    body["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    data = b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def plain(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


MODELS = plain("200 OK", json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


class Handler(socketserver.BaseRequestHandler):
    ttft_s = 0.1
    itl_s = 0.01
    default_tokens = 16

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, rest = buf.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                rest += chunk
            received = time.perf_counter()
            body, buf = rest[:length], rest[length:]
            request_line = head.split(b"\r\n", 1)[0]
            if request_line.startswith(b"GET /v1/models"):
                sock.sendall(MODELS)
            elif request_line.startswith(b"POST"):
                self.stream(sock, body, received)
            else:
                sock.sendall(plain("200 OK", b"ok", "text/plain"))

    def stream(self, sock: socket.socket, raw: bytes, received: float) -> None:
        try:
            tokens = int(json.loads(raw).get("max_tokens") or self.default_tokens)
        except ValueError:
            tokens = self.default_tokens
        sock.sendall(STREAM_HEAD)
        first = received + self.ttft_s
        for i in range(tokens):
            sleep_until(first + i * self.itl_s)
            finish = "length" if i == tokens - 1 else None
            out = event({"content": " tok"}, finish)
            if i == 0:
                out = event({"role": "assistant", "content": ""}) + out
            sock.sendall(out)
        usage = {"prompt_tokens": 32, "completion_tokens": tokens, "total_tokens": 32 + tokens}
        done = b"data: [DONE]\n\n"
        sock.sendall(event(None, usage=usage) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18123)
    parser.add_argument("--ttft-ms", type=float, default=100.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    args = parser.parse_args()
    Handler.ttft_s = args.ttft_ms / 1000
    Handler.itl_s = args.itl_ms / 1000
    with Server((args.host, args.port), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
