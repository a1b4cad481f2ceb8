"""Learning about the target before the run: is it up, which model, what server; and its API key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp

from servewise.errors import UnreachableError
from servewise.protocols import api_notes
from servewise.protocols.endpoint import auth_headers, listed_models, model_ids, models_url, server_root
from servewise.spec.errors import SpecError
from servewise.spec.models import TargetSpec


class TargetUnreachable(UnreachableError):
    """Nothing answered at the target URL (exit code 3)."""


@dataclass
class TargetInfo:
    url: str
    api: str
    model: str
    models: list[str] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # a non-OpenAI API's timing definitions (api_notes)

    @property
    def simulated(self) -> bool:
        """servewise's own twin answers /twin: every report must say its numbers are simulated."""
        return "twin" in self.server

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "api": self.api,
            "model": self.model,
            "models": self.models,
            "server": self.server,
            "simulated": self.simulated,
        } | self.notes


async def discover(target: TargetSpec, api_key: str | None, timeout_s: float = 10.0) -> TargetInfo:
    """GET /v1/models (and the engine's version route when there is one) to fix the model name."""
    root = server_root(target.url)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    server: dict[str, Any] = {}
    models: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout, headers=auth_headers(api_key)) as session:
        try:
            async with session.get(models_url(target.url)) as resp:
                server["server_header"] = resp.headers.get("Server")
                server["models_status"] = resp.status
                if resp.status == 200:
                    listed = listed_models(await resp.json(content_type=None))
                    models = model_ids(listed)
                    server["models"] = [
                        {k: m.get(k) for k in ("id", "owned_by", "max_model_len", "created") if k in m}
                        for m in listed
                    ]
        except aiohttp.ClientConnectorCertificateError as exc:
            why = getattr(exc.certificate_error, "verify_message", exc.certificate_error)  # ssl's says it best
            raise TargetUnreachable(
                f"{target.url} answers, but its TLS certificate is not trusted ({why});"
                " if it is signed by your own CA, point SSL_CERT_FILE at that CA's certificate bundle"
            ) from None
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise TargetUnreachable(f"nothing answers at {target.url} ({_reason(exc)})") from None
        except (aiohttp.ClientError, ValueError):
            pass
        for path, key in (("/version", "version"), ("/props", "props"), ("/twin", "twin")):
            try:
                async with session.get(root + path) as resp:
                    if resp.status == 200 and "json" in resp.headers.get("Content-Type", ""):
                        body = await resp.json()
                        server[key] = _small(body)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
    model = target.model or (models[0] if models else None)
    if model is None:
        raise SpecError(
            f"target.model: the server at {target.url} lists no models at /v1/models; name one with --model"
        )
    return TargetInfo(url=target.url, api=target.api.value, model=model, models=models, server=server,
                      notes=api_notes(target))  # fmt: skip


def _small(body: Any) -> Any:
    """Keep version info, drop bulk (llama.cpp's /props carries the whole chat template)."""
    if not isinstance(body, dict):
        return body
    keep = {}
    for key, value in body.items():
        if isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) < 200):
            keep[key] = value
    return keep


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.split(" [")[0] if "Connect call failed" in text else text
