"""Where an OpenAI-compatible server's routes are, from the one URL a user gives, and what its model list says.

Users type ``http://h:8000``, ``http://h:8000/v1`` or a proxy's ``https://gw/llm/v1``; bench, discovery,
telemetry, probes and coldstart must all read that URL the same way, so every composed URL (the API
routes under ``/v1/``, the server root beside them with ``/metrics``, the origin with ``/health``) and the
parsing of ``/v1/models`` live here, once.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from servewise.spec.models import Api, TargetSpec

ROUTES = {
    Api.CHAT: "chat/completions",
    Api.COMPLETIONS: "completions",
    Api.EMBEDDINGS: "embeddings",
    Api.RESPONSES: "responses",
    Api.ANTHROPIC: "messages",
    Api.RERANK: "rerank",
    Api.IMAGES: "images/generations",
}


def request_path(target: TargetSpec) -> str:
    """Where an API's requests go: ``target.route`` when given; a generic JSON API's own URL path; else
    the API's route under ``/v1/``."""
    if target.route:
        return target.route
    if target.api is Api.HTTP:
        return urlsplit(target.url).path or "/"
    return api_base_path(target.url) + ROUTES[target.api]


def api_base_path(url: str) -> str:
    """``http://h:8000`` and ``http://h:8000/v1`` both mean the OpenAI routes under ``/v1/``."""
    path = urlsplit(url).path.rstrip("/")
    return path + "/" if path.endswith("/v1") else path + "/v1/"


def origin(url: str) -> str:
    """``http://h:8000/health`` -> ``http://h:8000``; a URL without scheme or host is refused."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def server_root(url: str) -> str:
    """Where the engine's own routes (``/metrics``, ``/health``, ``/version``) sit: beside ``/v1``, not under it."""
    return origin(url) + api_base_path(url).removesuffix("v1/").rstrip("/")


def models_url(url: str) -> str:
    """The model list sits with the API routes, under ``/v1/``."""
    return origin(url) + api_base_path(url) + "models"


def metrics_url(url: str) -> str:
    """Engines serve /metrics at the root, beside (not under) /v1."""
    return server_root(url) + "/metrics"


def health_url(url: str) -> str:
    """The conventional health route, at the origin (what a load balancer would probe)."""
    return origin(url) + "/health"


def host_port(url: str) -> tuple[str, int]:
    """The address to connect to; the port defaults by scheme."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The key travels as a header only, never in a URL."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def anthropic_headers(api_key: str | None, version: str) -> dict[str, str]:
    """Anthropic's own: the key as ``x-api-key`` and the API version every request must name."""
    return ({"x-api-key": api_key} if api_key else {}) | {"anthropic-version": version}


def listed_models(body: Any) -> list[dict[str, Any]]:
    """The entries of a ``/v1/models`` answer (parsed, or its raw bytes); empty when it is no model list."""
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except ValueError:
            return []
    data = body.get("data") if isinstance(body, dict) else None
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def model_ids(models: list[dict[str, Any]]) -> list[str]:
    """The names a request may use, in the server's order (the first is the default model)."""
    return [str(m["id"]) for m in models if m.get("id")]
