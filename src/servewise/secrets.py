"""API keys: read from an environment variable or a file, handed to the request layer, never stored.

A key is never a flag value (shells keep history) and never part of a spec, a run, a report or a log.
"""

from __future__ import annotations

import os
from pathlib import Path

from servewise.spec.errors import SpecError

DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def load_api_key(
    env_name: str | None = None, file_path: str | None = None, *, fallback: bool = True
) -> str | None:
    """The named variable, else the named file, else ``$OPENAI_API_KEY`` (when ``fallback``), else None."""
    if file_path:
        try:
            value = Path(file_path).expanduser().read_text().strip()
        except OSError as exc:
            raise SpecError(f"cannot read the API key file {file_path}: {exc.strerror}") from None
        if not value:
            raise SpecError(f"the API key file {file_path} is empty")
        return value
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise SpecError(f"environment variable {env_name} (the API key) is not set or empty")
        return value
    if not fallback:
        return None
    return os.environ.get(DEFAULT_KEY_ENV, "").strip() or None
