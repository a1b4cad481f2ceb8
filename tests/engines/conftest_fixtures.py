"""Session-scoped pytest fixtures that start real engines.

Import them into tests/conftest.py:

    from engines.conftest_fixtures import infinity_server, llama_server, vllm_server  # noqa: F401

A fixture skips (with the reason) when its engine is not installed or was skipped by
SERVEWISE_SKIP_<ENGINE>=1; an installed engine that fails to start is an error, with the last
40 lines of its log in the message.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from engines.servers import EngineServer, InfinityServer, LlamaServer, VllmServer


def _serve(cls: type[EngineServer], **kwargs) -> Iterator[EngineServer]:
    reason = cls.missing_reason()
    if reason:
        pytest.skip(reason)
    srv = cls(**kwargs)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """llama-server: 4 slots, 2 threads, ctx 4096, --metrics; model id "tiny-llama"."""
    yield from _serve(LlamaServer)


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[VllmServer]:
    """vLLM CPU with --enforce-eager, 1 GiB KV cache, max-model-len 2048, its prefix cache on, cached
    tokens reported in usage and its Responses store on (previous_response_id); model id "tiny-llama"."""
    yield from _serve(VllmServer, extra_args=["--enable-prefix-caching", "--enable-prompt-tokens-details"],
                      env={"VLLM_ENABLE_RESPONSES_API_STORE": "1"})


@pytest.fixture(scope="session")
def infinity_server() -> Iterator[InfinityServer]:
    """infinity-emb with all-MiniLM-L6-v2 (384-dim); model id "all-MiniLM-L6-v2"."""
    yield from _serve(InfinityServer)
