"""`servewise gate --serve` in a thread of the test, and a GET that returns the status and JSON of any answer."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from servewise.flows.gate import make_server


def serve_gate(store: str | Path, defaults: dict[str, Any] | None = None) -> tuple[ThreadingHTTPServer, str]:
    """The gate's web provider on a free port over ``store``: the server (shut it down) and its base URL."""
    server = make_server(str(store), defaults or {"record": False}, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
