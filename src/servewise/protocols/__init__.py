"""How servewise speaks to an endpoint: where its routes are (``endpoint``), and one adapter per API,
request bytes out, measured response in. No scheduling, no aggregation."""

from servewise.protocols.openai import OpenAIAdapter, ResponseReader

__all__ = ["OpenAIAdapter", "ResponseReader"]
