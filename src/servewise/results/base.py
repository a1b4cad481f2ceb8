"""The one base every result model shares: frozen, fields by name or JSON alias, JSON-mode dumps."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Result(BaseModel):
    """Immutable; unknown keys in stored JSON are ignored so older and newer stores both open."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The stored and exported JSON shape (field order is the output order)."""
        return self.model_dump(mode="json", by_alias=True)
