"""What was warm before a start: the compile cache, the page cache over the model files; and the
means to make them cold (delete a cache folder, drop the kernel's page cache)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from servewise.errors import UsageError

DROP_CACHES = Path("/proc/sys/vm/drop_caches")
# flags engines use for the model they serve (vLLM, SGLang, TGI, llama.cpp, infinity)
_MODEL_FLAGS = ("--model", "-m", "--model-path", "--model-id", "--model-dir")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".ckpt")


class CacheError(UsageError):
    """A cache the user asked to make cold cannot be made cold."""


def default_compile_cache(env: Mapping[str, str]) -> Path:
    """vLLM's torch.compile cache for a server started with ``env``."""
    root = env.get("VLLM_CACHE_ROOT")
    base = Path(root).expanduser() if root else Path(env.get("HOME") or Path.home()) / ".cache" / "vllm"
    return base / "torch_compile_cache"


def default_inductor_cache(env: Mapping[str, str]) -> Path:
    """torch inductor's own cache, which vLLM's compile also fills (outside vLLM's cache folder)."""
    if folder := env.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(folder).expanduser()
    try:
        user = env.get("USER") or env.get("LOGNAME") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid())
    return Path(tempfile.gettempdir()) / f"torchinductor_{user}"


def folder_state(path: Path) -> dict[str, Any]:
    """Whether a cache folder has anything in it, and how much."""
    if not path.is_dir():
        return {"path": str(path), "existed": False, "bytes": 0}
    total = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                files += 1
            except OSError:
                continue
    return {"path": str(path), "existed": files > 0, "bytes": total}


def clear_folder(path: Path) -> bool:
    """Delete ``path`` (the next start recreates it); True if there was something to delete."""
    if not path.exists():
        return False
    if path.resolve() in (Path("/").resolve(), Path.home().resolve()):
        raise CacheError(f"refusing to delete {path}: give the cache folder itself")
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        raise CacheError(f"cannot delete {path}: {exc.strerror or exc}") from None
    return True


def check_drop_caches(target: Path = DROP_CACHES) -> None:
    """Fail early, before any server starts, when the page cache cannot be dropped here."""
    if os.geteuid() != 0:
        raise CacheError(
            "--drop-caches needs root (it writes /proc/sys/vm/drop_caches); run as root, or leave it out "
            "and read the page-cache state in the results"
        )
    if not os.access(target, os.W_OK):
        raise CacheError(f"--drop-caches: {target} is not writable here (a container without privileges?)")


def drop_page_cache(target: Path = DROP_CACHES) -> None:
    """Write back dirty pages, then drop clean page cache, dentries and inodes."""
    os.sync()
    try:
        target.write_text("3\n")
    except OSError as exc:
        raise CacheError(f"--drop-caches: cannot write {target}: {exc.strerror or exc}") from None


def model_path_from_argv(argv: Sequence[str]) -> Path | None:
    """The local model file or folder a server command names, if it names one that exists."""
    for i, arg in enumerate(argv):
        for flag in _MODEL_FLAGS:
            value = None
            if arg == flag and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value and Path(value).expanduser().exists():
                return Path(value).expanduser()
    return None


def model_files(path: Path) -> list[Path]:
    """Weight files under a model folder (all files when none look like weights)."""
    if path.is_file():
        return [path]
    files = [p for p in path.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in _WEIGHT_SUFFIXES]
    return sorted(weights or files)


def total_bytes(files: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in files if p.exists())


def resident_bytes(files: Sequence[Path]) -> int | None:
    """Bytes of ``files`` in the page cache, by util-linux ``fincore``; None when it is not installed."""
    tool = shutil.which("fincore")
    if tool is None or not files:
        return None
    try:
        out = subprocess.run(
            [tool, "--bytes", "--noheadings", "--raw", "--output", "RES", *map(str, files)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    values = [int(line) for line in out.stdout.split() if line.strip().isdigit()]
    return sum(values) if values else None


def block_device(path: Path) -> str | None:
    """``nvme0n1 (non-rotational)``-style name of the disk holding ``path``; None for overlay/network/tmpfs."""
    try:
        dev = os.stat(path).st_dev
    except OSError:
        return None
    sys_dev = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sys_dev.exists():
        return None
    node = sys_dev.resolve()
    disk = node.parent if (node / "partition").exists() else node
    kind = ""
    rotational = disk / "queue" / "rotational"
    if rotational.exists():
        kind = " (rotational)" if rotational.read_text().strip() == "1" else " (non-rotational)"
    return disk.name + kind
