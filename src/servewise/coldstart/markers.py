"""Phase markers: the log lines that tell where a server is in its startup (pure; no I/O).

Every built-in pattern is tried on every line, so no engine has to be named: the patterns are
specific enough not to fire on another engine's output. Patterns from different engines share a
phase name when they mean the same step (``weights_loaded``), so phases line up across engines.
A pattern may capture ``seconds`` (and optionally ``unit``: ``ms``/``s``/``min``) when the server
reports how long the step took; that number is kept next to the arrival time we measured.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from servewise.errors import UsageError

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_UNIT_S = {
    None: 1.0,
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "ms": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "min": 60.0,
}
_SECONDS = r"(?P<seconds>\d+(?:\.\d+)?)"


@dataclass(frozen=True, slots=True)
class MarkerPattern:
    """One phase marker: the phase ``name`` it ends, the regex, and who it belongs to."""

    name: str
    regex: re.Pattern[str]
    engine: str


@dataclass(frozen=True, slots=True)
class PhaseMark:
    """A marker seen in the log: ``t`` is the line's arrival in seconds since spawn."""

    name: str
    t: float
    engine: str
    line: str
    reported_s: float | None = None


def _p(name: str, engine: str, regex: str) -> MarkerPattern:
    return MarkerPattern(name=name, regex=re.compile(regex), engine=engine)


BUILTIN_PATTERNS: tuple[MarkerPattern, ...] = (
    # vLLM (V1 engine; the CPU build prints the same lines)
    _p("engine_init_start", "vllm", r"Initializing an? (?:V1 )?LLM engine"),
    _p("weights_load_start", "vllm", r"Starting to load model "),
    _p("weights_loaded", "vllm", rf"Loading weights took {_SECONDS} ?s"),
    _p("model_loaded", "vllm", rf"Model loading took .*? and {_SECONDS} ?s"),
    _p("compile_start", "vllm", r"Warming up model for the compilation"),  # CPU model runner
    _p("compile_cache_load_failed", "vllm", r"Compiling model again due to a load failure"),
    _p("dynamo_transformed", "vllm", rf"Dynamo bytecode transform time: {_SECONDS} ?s"),
    _p("compile_cache_hit", "vllm", rf"Directly load the compiled graph.*?took {_SECONDS} ?s"),
    _p("compile_cache_hit", "vllm", r"Directly load AOT compilation from"),
    _p("graph_compiled", "vllm", rf"Compiling a graph for .*?takes {_SECONDS} ?s"),
    _p("compile_saved", "vllm", r"saved AOT compiled function to"),
    _p("compiled", "vllm", rf"torch\.compile (?:takes|took) {_SECONDS} ?s in total"),
    _p("compiled", "vllm", r"Warming up done\."),  # CPU model runner: compiling ends here
    _p("graph_captured", "vllm", rf"Graph capturing finished in {_SECONDS} ?secs?"),
    _p("engine_init", "vllm", rf"init engine \(profile, create kv cache, warmup model\) took {_SECONDS} ?s"),
    _p("api_server_start", "vllm", r"Starting vLLM (?:API )?server"),
    # SGLang
    _p("weights_load_start", "sglang", r"Load weight begin"),
    _p("weights_loaded", "sglang", r"Load weight end\."),
    _p("kv_cache_allocated", "sglang", r"Memory pool end\."),
    _p("graph_capture_start", "sglang", r"Capture cuda graph begin"),
    _p("graph_captured", "sglang", rf"Capture cuda graph end\. Time elapsed: {_SECONDS} ?s"),
    _p("server_ready", "sglang", r"The server is fired up and ready to roll"),
    # TGI (text-generation-launcher; durations print as Rust's Debug, e.g. 10.41s or 812.3ms)
    _p("download_start", "tgi", r"Starting download process"),
    _p("weights_downloaded", "tgi", r"Successfully downloaded weights"),
    _p("shard_start", "tgi", r"Starting shard"),
    _p("shard_ready", "tgi", rf"Shard ready in {_SECONDS}(?P<unit>ms|µs|us|s)"),
    _p("warmup_start", "tgi", r"Warming up model(?! for the compilation)"),
    _p("kv_cache_allocated", "tgi", r"Setting max batch total tokens to"),
    # llama.cpp llama-server (older builds log from ``main:``, newer ones from ``llama_server:``)
    _p("weights_load_start", "llamacpp", r"load_model: loading model"),
    _p("weights_loaded", "llamacpp", r"load_tensors: .*model buffer size"),
    _p("context_created", "llamacpp", r"llama_context: constructing llama_context"),
    _p("warmup_start", "llamacpp", r"warming up the model with an empty run"),
    _p("context_created", "llamacpp", r"load_model: initializing, n_slots"),
    _p("model_loaded", "llamacpp", r"(?:main|llama_server): model loaded"),
    _p("server_listening", "llamacpp", r"server is listening on|llama_server: listening on"),
    # uvicorn (vLLM, SGLang and most Python servers)
    _p("app_startup", "uvicorn", r"Application startup complete"),
)


class MarkerError(UsageError):
    """A ``--phase NAME=REGEX`` the user wrote cannot be used."""


def parse_user_phase(text: str) -> MarkerPattern:
    """``NAME=REGEX`` -> a pattern. The regex may capture ``seconds`` (and ``unit``)."""
    name, sep, regex = text.partition("=")
    name = name.strip()
    if not sep or not regex:
        raise MarkerError(f"--phase expects NAME=REGEX, got {text!r}")
    if not _NAME.match(name):
        raise MarkerError(f"--phase: {name!r} is not a usable phase name (letters, digits, _ . -)")
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise MarkerError(f"--phase {name}: bad regular expression {regex!r}: {exc}") from None
    return MarkerPattern(name=name, regex=compiled, engine="user")


def _reported_seconds(match: re.Match[str]) -> float | None:
    groups = match.groupdict()
    if groups.get("seconds") is None:
        return None
    unit = groups.get("unit")
    if unit not in _UNIT_S:
        return None
    return float(groups["seconds"]) * _UNIT_S[unit]


def match_line(t: float, line: str, patterns: Iterable[MarkerPattern]) -> list[PhaseMark]:
    """Every pattern the line matches, as marks at arrival time ``t``."""
    clean = _ANSI.sub("", line).strip()
    marks = []
    for pattern in patterns:
        match = pattern.regex.search(clean)
        if match:
            marks.append(PhaseMark(pattern.name, t, pattern.engine, clean[:300], _reported_seconds(match)))
    return marks


def find_marks(lines: Iterable[tuple[float, str]], patterns: Iterable[MarkerPattern]) -> list[PhaseMark]:
    """Marks in arrival order, the first occurrence of each phase name only, so a step that every
    tensor-parallel rank logs counts once."""
    patterns = tuple(patterns)
    seen: set[str] = set()
    found = []
    for t, line in lines:
        for mark in match_line(t, line, patterns):
            if mark.name not in seen:
                seen.add(mark.name)
                found.append(mark)
    return found


def engine_from_log(marks: Iterable[PhaseMark]) -> str | None:
    """The engine whose markers fired most (ties: the first seen); uvicorn and user marks don't count."""
    counts: dict[str, int] = {}
    for mark in marks:
        if mark.engine not in ("uvicorn", "user"):
            counts[mark.engine] = counts.get(mark.engine, 0) + 1
    return max(counts, key=lambda engine: counts[engine]) if counts else None
