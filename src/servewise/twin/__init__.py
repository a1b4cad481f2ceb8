"""The twin: an OpenAI-compatible server whose timing comes from the capacity simulator."""

from servewise.twin.server import (
    TwinConfig,
    TwinHandle,
    TwinScheduler,
    build_config,
    create_app,
    estimate_prompt_tokens,
    run_twin,
    start_twin,
)

__all__ = [
    "TwinConfig",
    "TwinHandle",
    "TwinScheduler",
    "build_config",
    "create_app",
    "estimate_prompt_tokens",
    "run_twin",
    "start_twin",
]
