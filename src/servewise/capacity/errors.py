"""One error type for every capacity question a user can get wrong (unknown names, bad files, bad flags)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from servewise.errors import UsageError


class CapacityError(UsageError):
    """A bad model, GPU, precision or file. The message says what was expected."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> CapacityError:
    """``unknown GPU 'h10'; did you mean h100-sxm, h100-pcie? (known: ...)`` — close matches first."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    close += [k for k in known if name and name in k and k not in close][: 4 - len(close)]
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return CapacityError(f"unknown {kind} {name!r}{hint} (known: {', '.join(known)})")
