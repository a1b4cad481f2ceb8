"""The twin as an image engine: ``/v1/images/generations`` timed by ``capacity.images``.

One GPU makes one image after another (what diffusion servers do by default), so a request of ``n``
images holds the GPU for ``n`` image-times and later requests queue behind it: latency grows with load
the way a real image server's does. The images are a tiny valid PNG each; the timing is the point.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import builtin_catalog
from servewise.capacity.images import ImageModel, image_model, seconds_per_image
from servewise.twin.server import TwinHandle, serve_forever, start_app

__all__ = ["create_image_app", "serve_forever", "start_image_twin"]


def _png_1x1() -> str:
    """A valid one-pixel PNG, base64: what ``b64_json`` carries (its size is not what is measured)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()


_PNG = _png_1x1()


@dataclass
class ImageTwin:
    model: ImageModel
    gpu: str
    time_scale: float
    gpu_seconds: float = 0.0  # simulated GPU time spent: what /twin reports beside the wall clock
    images: int = 0

    def __post_init__(self) -> None:
        self.gpu_free = asyncio.Lock()
        self.spec = builtin_catalog().get(self.gpu)

    async def generate(self, size: str, n: int, steps: int | None) -> None:
        seconds = seconds_per_image(self.model, self.spec, size, steps) * self.time_scale
        async with self.gpu_free:
            for _ in range(n):
                await asyncio.sleep(seconds)
                self.gpu_seconds += seconds
                self.images += 1


_KEY = web.AppKey("image_twin", ImageTwin)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error"}}, status=status)


async def generations(request: web.Request) -> web.Response:
    twin = request.app[_KEY]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        return _error(400, "an image request needs a prompt")
    n, size, steps = body.get("n", 1), str(body.get("size", "1024x1024")), body.get("steps")
    if (
        not isinstance(n, int)
        or not 1 <= n <= 16
        or not (steps is None or (isinstance(steps, int) and steps > 0))
    ):
        return _error(400, "n must be 1..16 and steps a positive integer")
    try:
        await twin.generate(size, n, steps)
    except CapacityError as exc:
        return _error(400, str(exc))
    return web.json_response({"created": int(time.time()), "data": [{"b64_json": _PNG} for _ in range(n)]})


async def models(request: web.Request) -> web.Response:
    twin = request.app[_KEY]
    entry = {"id": twin.model.name, "object": "model", "owned_by": "servewise-twin"}
    return web.json_response({"object": "list", "data": [entry]})


async def twin_info(request: web.Request) -> web.Response:
    twin = request.app[_KEY]
    info: dict[str, Any] = {
        "model": twin.model.name,
        "gpu": twin.spec.name,
        "kind": "images",
        "time_scale": twin.time_scale,
        "images": twin.images,
        "gpu_seconds": twin.gpu_seconds,
    }
    return web.json_response(info)  # fmt: skip


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


def create_image_app(model: str = "sd-1.5", gpu: str = "rtx4090", time_scale: float = 1.0) -> web.Application:
    """An image engine on ``gpu`` (an unknown model or GPU is refused here, before anything listens)."""
    app = web.Application()
    app[_KEY] = ImageTwin(image_model(model), gpu, time_scale)
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/twin", twin_info)
    return app


async def start_image_twin(host: str = "127.0.0.1", port: int = 0, **options: Any) -> TwinHandle:
    """Start in the running loop (tests); options as ``create_image_app``."""
    return await start_app(create_image_app(**options), host, port)
