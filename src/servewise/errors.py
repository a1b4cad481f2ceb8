"""One error tree: every failure a user can cause is a ServewiseError carrying its exit code and a
one-line message. The CLI maps it once (``cli/app.py``); no command catches and re-maps on its own.

Exit codes: 2 bad usage, input or store; 3 the target (or the thing waited for) is unreachable or not
ready; the gate's 1 (fail) and 3 (inconclusive) and bench's 1 (SLO missed) are verdicts, not errors.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class ServewiseError(Exception):
    """Base of every error a user can cause or fix; ``str(exc)`` is the one line shown."""

    exit_code = EXIT_USAGE


class UsageError(ServewiseError, ValueError):
    """A bad flag, spec, input file or run reference: exit 2 (a ValueError too: a value was wrong)."""


class StoreError(UsageError):
    """The run store cannot be opened, is from a newer servewise, or lacks the run asked for: exit 2."""


class UnreachableError(ServewiseError):
    """Nothing answered where something had to (a target, a server that never became ready): exit 3."""

    exit_code = EXIT_UNREACHABLE


class InternalFailure(ServewiseError):
    """servewise itself could not carry on (a worker process died): exit 1, with what happened."""

    exit_code = 1
