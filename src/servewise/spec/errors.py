"""One error type for everything a user can get wrong in a spec or a flag."""

from __future__ import annotations

from pydantic import ValidationError

from servewise.errors import UsageError


class SpecError(UsageError):
    """A bad spec or flag. The message names the field and says what was expected."""


def describe_validation_error(exc: ValidationError, source: str = "spec") -> str:
    """Turn pydantic's error list into short lines a user can act on."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {err['msg']}")
    return "\n".join(lines)
