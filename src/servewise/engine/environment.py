"""The environment a run was measured in, stored with it so unlike runs are never compared silently."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from typing import Any

import psutil

import servewise


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _gpus() -> list[dict[str, Any]]:
    """NVML is optional: without it (or without a GPU) the list is empty."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml raises NVMLError subclasses for every missing-driver case
        return []
    try:
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            found.append(
                {
                    "index": i,
                    "name": name if isinstance(name, str) else name.decode(),
                    "memory_bytes": memory.total,
                }
            )
        return found
    finally:
        pynvml.nvmlShutdown()


def environment_fingerprint() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "python": sys.version.split()[0],
        "servewise": servewise.__version__,
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "gpus": _gpus(),
    }
