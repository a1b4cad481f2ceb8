"""Reading a YAML spec file and laying command-line overrides over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from servewise.spec.errors import SpecError, describe_validation_error
from servewise.spec.models import RunSpec


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) spec into a plain dict; validation happens in ``merge_spec``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"spec file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError(f"spec file {path} must hold a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_spec(file_data: dict[str, Any], overrides: dict[str, Any], source: str = "spec") -> RunSpec:
    """Flags win over the file; the result is validated once, with errors naming the field."""
    try:
        return RunSpec.model_validate(_deep_merge(file_data, overrides))
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, source)) from None
