"""Parsers for the compact flag syntax: ``poisson:4``, ``normal:512,128``, ``ttft_p95=500ms``."""

from __future__ import annotations

import re
from typing import TypeVar, cast

from pydantic import BaseModel, ValidationError

from servewise.spec.errors import SpecError, describe_validation_error
from servewise.spec.models import (
    LengthSpec,
    LoadSpec,
    SharedPrefixSpec,
    SloMetric,
    SloSpec,
    SloStat,
    SloTarget,
)

_Model = TypeVar("_Model", bound=BaseModel)

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s|m|h)?\s*$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, default_unit: str = "s") -> float:
    """``90``, ``90s``, ``1.5m``, ``250ms`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise SpecError(f"not a duration: {text!r} (examples: 60, 60s, 2m, 250ms)")
    unit = match.group(2) or default_unit
    return float(match.group(1)) * _UNIT_S[unit]


def _numbers(text: str, what: str, count: int | None = None) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SpecError(f"{what}: expected numbers separated by commas, got {text!r}") from None
    if count is not None and len(values) != count:
        raise SpecError(f"{what}: expected {count} number(s), got {text!r}")
    return values


def _build(model: type[_Model], what: str, **fields: object) -> _Model:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise SpecError(describe_validation_error(exc, what)) from None


def parse_length(text: str, what: str = "length") -> LengthSpec:
    """``512`` | ``fixed:512`` | ``uniform:256,1024`` | ``normal:512,128`` | ``lognormal:512,200``
    | ``empirical:100,200,400``; any may end with ``;min=N;max=N`` to clip."""
    head, *clips = text.strip().split(";")
    bounds: dict[str, int] = {}
    for clip in clips:
        key, _, value = clip.partition("=")
        if key.strip() not in ("min", "max") or not value.strip().isdigit():
            raise SpecError(f"{what}: clip must be min=N or max=N, got {clip!r}")
        bounds[key.strip()] = int(value)
    kind, sep, params = head.partition(":")
    kind = kind.strip().lower()
    if not sep:
        if kind.isdigit():
            return _build(LengthSpec, what, kind="fixed", value=int(kind), **bounds)
        raise SpecError(
            f"{what}: expected N or KIND:PARAMS (fixed, uniform, normal, lognormal, empirical), got {text!r}"
        )
    match kind:
        case "fixed":
            (fixed,) = _numbers(params, what, 1)
            return _build(LengthSpec, what, kind="fixed", value=int(fixed), **bounds)
        case "uniform":
            low, high = _numbers(params, what, 2)
            return _build(LengthSpec, what, kind="uniform", low=int(low), high=int(high), **bounds)
        case "normal" | "lognormal":
            mean, std = _numbers(params, what, 2)
            return _build(LengthSpec, what, kind=kind, mean=mean, std=std, **bounds)
        case "empirical":
            values = [int(v) for v in _numbers(params, what)]
            return _build(LengthSpec, what, kind="empirical", values=values, **bounds)
    raise SpecError(f"{what}: unknown distribution {kind!r} (fixed, uniform, normal, lognormal, empirical)")


def parse_load(text: str) -> LoadSpec:
    """``poisson:4`` | ``constant:10`` | ``gamma:4,0.5`` (rate, burstiness) | ``concurrency:8`` | ``sweep``;
    open-loop kinds take ``;max-concurrency=N``."""
    head, *options = text.strip().split(";")
    extra: dict[str, int] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key.strip() not in ("max-concurrency", "max_concurrency") or not value.strip().isdigit():
            raise SpecError(f"load: option must be max-concurrency=N, got {option!r}")
        extra["max_concurrency"] = int(value)
    kind, _, params = head.partition(":")
    kind = kind.strip().lower()
    match kind:
        case "poisson" | "constant":
            (rate,) = _numbers(params, "load", 1)
            return _build(LoadSpec, "load", kind=kind, rate=rate, **extra)
        case "gamma":
            rate, burstiness = _numbers(params, "load", 2)
            return _build(LoadSpec, "load", kind="gamma", rate=rate, burstiness=burstiness, **extra)
        case "concurrency":
            (concurrency,) = _numbers(params, "load", 1)
            return _build(LoadSpec, "load", kind="concurrency", concurrency=int(concurrency))
        case "sweep":
            return _build(LoadSpec, "load", kind="sweep", **extra)
        case "sessions":
            return _build(LoadSpec, "load", kind="sessions", **_session_params(params), **extra)
    raise SpecError(
        f"load: unknown kind {kind!r}; use poisson:RATE, constant:RATE, gamma:RATE,BURSTINESS, "
        "concurrency:N, sessions:users=N,turns=T,think=DURATION (or rate=R) or sweep"
    )


def _key_values(text: str, what: str) -> dict[str, str]:
    """``a=1,b=uniform:2,6,c=2s`` -> ``{a: 1, b: uniform:2,6, c: 2s}``: a part without ``=`` continues the
    value before it, so a distribution's commas need no quoting."""
    found: dict[str, str] = {}
    last = None
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if sep:
            last = key.strip().lower()
            found[last] = value.strip()
        elif last is not None:
            found[last] += "," + part
        else:
            raise SpecError(f"{what}: expected KEY=VALUE, got {part!r}")
    return found


def _session_params(text: str) -> dict[str, object]:
    values = _key_values(text, "load")
    unknown = set(values) - {"users", "rate", "turns", "think"}
    if unknown:
        raise SpecError(f"load: sessions take users=, rate=, turns= and think=, not {', '.join(sorted(unknown))}")
    params: dict[str, object] = {"think_s": parse_duration(values.get("think", "0s"))}
    if "turns" in values:
        params["turns"] = parse_length(values["turns"], "load: turns")
    for key in ("users", "rate"):
        if key in values:
            (number,) = _numbers(values[key], f"load: {key}", 1)
            params[key] = int(number) if key == "users" else number
    return params


def parse_shared_prefix(text: str) -> SharedPrefixSpec:
    """``1000`` | ``1000,groups=4``: every prompt starts with one of ``groups`` shared prefixes of that length."""
    head, _, rest = text.strip().partition(",")
    (tokens,) = _numbers(head, "--shared-prefix", 1)
    values = _key_values(rest, "--shared-prefix") if rest else {}
    if set(values) - {"groups"}:
        raise SpecError(f"--shared-prefix: expected TOKENS[,groups=K], got {text!r}")
    groups = _numbers(values["groups"], "--shared-prefix groups", 1)[0] if "groups" in values else 1
    return _build(SharedPrefixSpec, "--shared-prefix", tokens=int(tokens), groups=int(groups))


def parse_labels(items: list[str], what: str = "--label") -> dict[str, str]:
    """``["release=v1.4", "model=llama"]`` -> a dict; ``what`` names the input in the error."""
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{what} must be KEY=VALUE, got {item!r}")
        labels[key.strip()] = value.strip()
    return labels


_SLO_ITEM = re.compile(r"^\s*(ttft|tpot|itl|e2e)_(p50|p90|p95|p99|p99\.9|mean|max)\s*=\s*(.+?)\s*$")


def parse_slo(text: str) -> SloSpec:
    """``ttft_p95=500ms,tpot_p95=50ms,e2e_p99=10s,errors=1%`` -> SloSpec (latencies kept in ms)."""
    targets: list[SloTarget] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item.startswith("errors"):
            _, _, value = item.partition("=")
            value = value.strip()
            try:
                limit = float(value.rstrip("%")) / 100 if value.endswith("%") else float(value)
            except ValueError:
                raise SpecError(f"slo: errors must be a percentage like errors=1%, got {item!r}") from None
            if not 0 <= limit <= 1:
                raise SpecError(f"slo: errors must be between 0% and 100%, got {item!r}")
            targets.append(SloTarget(metric="errors", stat="rate", limit=limit))
            continue
        match = _SLO_ITEM.match(item)
        if not match:
            raise SpecError(
                f"slo: cannot read {item!r}; use METRIC_STAT=VALUE with METRIC ttft|tpot|itl|e2e, "
                "STAT p50|p90|p95|p99|p99.9|mean|max, e.g. ttft_p95=500ms, or errors=1%"
            )
        metric, stat, value = match.groups()
        # _SLO_ITEM admits only these literals (and pydantic checks them again)
        targets.append(
            SloTarget(
                metric=cast(SloMetric, metric),
                stat=cast(SloStat, stat),
                limit=parse_duration(value, default_unit="ms") * 1000,
            )
        )
    return SloSpec(targets=targets)
