"""How servewise speaks to an endpoint: where its routes are (``endpoint``), and one adapter per API,
request bytes out, measured response in. No scheduling, no aggregation. ``adapter_for`` is the one place
an API's adapter is chosen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servewise.protocols import anthropic, generic, images, rerank, responses
from servewise.protocols.anthropic import AnthropicAdapter
from servewise.protocols.base import Adapter, ResponseReader
from servewise.protocols.generic import TemplateAdapter
from servewise.protocols.images import ImagesAdapter
from servewise.protocols.openai import OpenAIAdapter
from servewise.protocols.rerank import RerankAdapter
from servewise.protocols.responses import ResponsesAdapter
from servewise.spec.models import Api, TargetSpec

_ADAPTERS: dict[Api, Callable[[TargetSpec, str | None, str | None], Adapter]] = {
    Api.CHAT: OpenAIAdapter,
    Api.COMPLETIONS: OpenAIAdapter,
    Api.EMBEDDINGS: OpenAIAdapter,
    Api.RESPONSES: ResponsesAdapter,
    Api.ANTHROPIC: AnthropicAdapter,
    Api.RERANK: RerankAdapter,
    Api.IMAGES: ImagesAdapter,
    Api.HTTP: TemplateAdapter,
}


def adapter_for(target: TargetSpec, model: str | None, api_key: str | None) -> Adapter:
    """The adapter that speaks ``target.api``: request bytes for each planned request, a reader per answer."""
    return _ADAPTERS[target.api](target, model, api_key)


_TIMING = {
    Api.RESPONSES: responses.TIMING,
    Api.ANTHROPIC: anthropic.TIMING,
    Api.RERANK: rerank.TIMING,
    Api.IMAGES: images.TIMING,
    Api.HTTP: generic.TIMING,
}


def api_notes(target: TargetSpec) -> dict[str, Any]:
    """What a run of a non-OpenAI API stores beside its target: how its TTFT, TPOT and latency are taken
    (the glossary's words for that API), so exports and reports say which definition a number follows.
    Empty for the OpenAI APIs, whose definitions are the glossary's own."""
    return {"timing": _TIMING[target.api]} if target.api in _TIMING else {}


__all__ = ["Adapter", "OpenAIAdapter", "ResponseReader", "adapter_for", "api_notes"]
