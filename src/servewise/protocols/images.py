"""Image generation (``/v1/images/generations``): a prompt, a size, ``n`` images and (where the server
takes it) a number of steps in; the images, as base64 or URLs, in one JSON body out. Latency is the
request's; latency per image and images/s divide by ``n``."""

from __future__ import annotations

import json
from typing import Any

from servewise.protocols.base import Failure, Framing, ResponseReader, mismatch, request_text
from servewise.protocols.endpoint import auth_headers
from servewise.protocols.events import CountedBodyReader
from servewise.records import ErrorClass, RequestRecord
from servewise.spec.models import TargetSpec
from servewise.workload.plan import PlannedRequest

EXPECTED = "OpenAI images"
TIMING = (
    "latency (E2E): the answer's last byte - the request's first; per image: E2E / n; TTFT: its first byte"
)


class ImagesAdapter(Framing):
    def __init__(self, target: TargetSpec, model: str | None, api_key: str | None) -> None:
        super().__init__(target, model, auth_headers(api_key), stream=False)
        image = target.image
        self._fixed: dict[str, Any] = {"size": image.size, "n": image.n, "response_format": "b64_json"}
        self._in_prompt = ""
        if image.steps is not None and image.steps_as == "sd_cpp_extra_args":
            extra = json.dumps({"sample_params": {"sample_steps": image.steps}})
            self._in_prompt = f" <sd_cpp_extra_args>{extra}</sd_cpp_extra_args>"  # sd-server strips it out
        elif image.steps is not None:
            self._fixed["steps"] = image.steps

    def body(self, request: PlannedRequest) -> dict[str, Any]:
        body = self.model_field()
        return body | {"prompt": request_text(request) + self._in_prompt} | self._fixed | self.target.extra_body

    def request_bytes(self, request: PlannedRequest) -> bytes:
        return self.frame_json(self.body(request), request)

    def reader(self, collect_text: bool = False) -> ResponseReader:
        return ImagesReader(self._fixed["n"])


class ImagesReader(CountedBodyReader):
    expected = EXPECTED
    __slots__ = ()

    def read(self, body: dict[str, Any], raw: bytearray, record: RequestRecord) -> Failure | None:
        data = body.get("data")
        if not isinstance(data, list) or (data and not isinstance(data[0], dict)):
            return mismatch(EXPECTED, body, raw)
        images = [d for d in data if isinstance(d, dict) and (d.get("b64_json") or d.get("url"))]
        if data and not images:
            return mismatch(EXPECTED, body, raw)
        if len(images) != self.wanted:
            return (
                ErrorClass.PROTOCOL,
                f"images answer has {len(images)} of the {self.wanted} images asked for",
            )
        self.no_text(record)
        return None
