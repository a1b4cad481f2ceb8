"""GPU samplers: NVML (nvidia-ml-py, imported lazily) and a dcgm-exporter scrape; both emit the same names.

``utilization_percent`` is NVML's "a kernel was running" duty cycle: it reads 100 for one tiny kernel, so
diagnosis never decides on it alone. ``sm_active`` / ``dram_active`` (0..1, GPM on Hopper+/DCGM profiling)
say how much of the chip and of its memory bandwidth were actually busy.
"""

from __future__ import annotations

import logging
import time
from types import ModuleType
from typing import Any

from servewise.records import Sample
from servewise.telemetry.exposition import RawSeries

log = logging.getLogger("servewise.telemetry")

# Clock-event (throttle) reason bits, as NVML and DCGM report them.
CLOCK_EVENT_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SW_THERMAL = 0x20
CLOCK_EVENT_HW_THERMAL = 0x40
CLOCK_EVENT_HW_POWER_BRAKE = 0x80
CLOCK_EVENTS_LIMITING = (
    CLOCK_EVENT_POWER_CAP
    | CLOCK_EVENT_HW_SLOWDOWN
    | CLOCK_EVENT_SW_THERMAL
    | CLOCK_EVENT_HW_THERMAL
    | CLOCK_EVENT_HW_POWER_BRAKE
)

_GPM_SM_UTIL = 2  # NVML_GPM_METRIC_SM_UTIL, percent
_GPM_DRAM_BW_UTIL = 10  # NVML_GPM_METRIC_DRAM_BW_UTIL, percent


def _load_nvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        log.debug("nvidia-ml-py not installed; GPU sampler off (pip install 'servewise[gpu]')")
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        log.debug("NVML unavailable (%s); GPU sampler off", exc)
        return None
    return pynvml


class NvmlSampler:
    """Every visible GPU through NVML; a call the GPU does not support is dropped after its first failure."""

    source = "gpu"

    def __init__(self, nvml: ModuleType | None = None) -> None:
        self._nvml = nvml if nvml is not None else _load_nvml()
        self._handles: list[Any] = []
        self._unsupported: set[str] = set()
        self._gpm_prev: dict[int, Any] = {}
        if self._nvml is None:
            return
        try:
            self._handles = [
                self._nvml.nvmlDeviceGetHandleByIndex(i) for i in range(self._nvml.nvmlDeviceGetCount())
            ]
        except Exception as exc:
            log.debug("NVML device enumeration failed (%s)", exc)
        self._gpm = {i for i, h in enumerate(self._handles) if self._gpm_supported(h)}

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def _gpm_supported(self, handle: Any) -> bool:
        try:
            return bool(self._nvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)  # type: ignore[union-attr]
        except Exception:
            return False

    def _call(self, key: str, fn: str, *args: Any) -> Any:
        if key in self._unsupported:
            return None
        try:
            return getattr(self._nvml, fn)(*args)
        except Exception as exc:
            log.debug("NVML %s unsupported here (%s)", fn, exc)
            self._unsupported.add(key)
            return None

    def collect(self) -> list[Sample]:
        nv = self._nvml
        if nv is None:
            return []
        samples: list[Sample] = []
        for index, h in enumerate(self._handles):
            now = time.perf_counter()
            labels = (("gpu", str(index)),)
            values: dict[str, float] = {}
            util = self._call("util", "nvmlDeviceGetUtilizationRates", h)
            if util is not None:
                values["utilization_percent"] = float(util.gpu)
                values["memory_utilization_percent"] = float(util.memory)
            mem = self._call("mem", "nvmlDeviceGetMemoryInfo", h)
            if mem is not None:
                values["memory_used_bytes"] = float(mem.used)
                values["memory_total_bytes"] = float(mem.total)
            if (power := self._call("power", "nvmlDeviceGetPowerUsage", h)) is not None:
                values["power_watts"] = power / 1000.0
            if (limit := self._call("limit", "nvmlDeviceGetEnforcedPowerLimit", h)) is not None:
                values["power_limit_watts"] = limit / 1000.0
            if (clock := self._call("clock", "nvmlDeviceGetClockInfo", h, nv.NVML_CLOCK_SM)) is not None:
                values["sm_clock_mhz"] = float(clock)
            if (
                max_clock := self._call("max_clock", "nvmlDeviceGetMaxClockInfo", h, nv.NVML_CLOCK_SM)
            ) is not None:
                values["sm_clock_max_mhz"] = float(max_clock)
            reasons_fn = (
                "nvmlDeviceGetCurrentClocksEventReasons"
                if hasattr(nv, "nvmlDeviceGetCurrentClocksEventReasons")
                else "nvmlDeviceGetCurrentClocksThrottleReasons"
            )
            if (reasons := self._call("reasons", reasons_fn, h)) is not None:
                values["clock_event_reasons"] = float(reasons)
            if (
                temp := self._call("temp", "nvmlDeviceGetTemperature", h, 0)
            ) is not None:  # NVML_TEMPERATURE_GPU
                values["temperature_c"] = float(temp)
            # PCIe counters are KB/s over a 20 ms window inside the driver (why the session runs us off-loop)
            if (
                tx := self._call("pcie", "nvmlDeviceGetPcieThroughput", h, nv.NVML_PCIE_UTIL_TX_BYTES)
            ) is not None:
                values["pcie_tx_bytes_per_s"] = tx * 1024.0
            if (
                rx := self._call("pcie", "nvmlDeviceGetPcieThroughput", h, nv.NVML_PCIE_UTIL_RX_BYTES)
            ) is not None:
                values["pcie_rx_bytes_per_s"] = rx * 1024.0
            if index in self._gpm:
                values.update(self._gpm_metrics(index, h))
            samples += [Sample(now, self.source, name, value, labels) for name, value in values.items()]
        return samples

    def _gpm_metrics(self, index: int, handle: Any) -> dict[str, float]:
        """SM and DRAM activity between this tick's GPM sample and the last one."""
        nv = self._nvml
        assert nv is not None
        try:
            sample = nv.nvmlGpmSampleAlloc()
            nv.nvmlGpmSampleGet(handle, sample)
        except Exception as exc:
            log.debug("GPM sampling failed on GPU %s (%s)", index, exc)
            self._gpm.discard(index)
            return {}
        prev, self._gpm_prev[index] = self._gpm_prev.get(index), sample
        if prev is None:
            return {}
        try:
            request = nv.c_nvmlGpmMetricsGet_t()
            request.version = nv.NVML_GPM_METRICS_GET_VERSION
            request.numMetrics = 2
            request.sample1, request.sample2 = prev, sample
            request.metrics[0].metricId = _GPM_SM_UTIL
            request.metrics[1].metricId = _GPM_DRAM_BW_UTIL
            nv.nvmlGpmMetricsGet(request)
            return {
                "sm_active": request.metrics[0].value / 100.0,
                "dram_active": request.metrics[1].value / 100.0,
            }
        except Exception as exc:
            log.debug("GPM metrics failed on GPU %s (%s)", index, exc)
            self._gpm.discard(index)
            return {}
        finally:
            try:
                nv.nvmlGpmSampleFree(prev)
            except Exception:
                log.debug("GPM sample free failed")

    def close(self) -> None:
        if self._nvml is not None and self._handles:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                log.debug("nvmlShutdown failed")


# dcgm-exporter field -> (canonical name, scale)
DCGM_FIELDS: dict[str, tuple[str, float]] = {
    "DCGM_FI_DEV_GPU_UTIL": ("utilization_percent", 1.0),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("memory_utilization_percent", 1.0),
    "DCGM_FI_DEV_FB_USED": ("memory_used_bytes", 1024.0 * 1024.0),  # MiB
    "DCGM_FI_DEV_POWER_USAGE": ("power_watts", 1.0),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": ("power_limit_watts", 1.0),
    "DCGM_FI_DEV_SM_CLOCK": ("sm_clock_mhz", 1.0),
    "DCGM_FI_DEV_MAX_SM_CLOCK": ("sm_clock_max_mhz", 1.0),
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS": ("clock_event_reasons", 1.0),
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("clock_event_reasons", 1.0),
    "DCGM_FI_DEV_GPU_TEMP": ("temperature_c", 1.0),
    "DCGM_FI_PROF_SM_ACTIVE": ("sm_active", 1.0),
    "DCGM_FI_PROF_DRAM_ACTIVE": ("dram_active", 1.0),
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": ("tensor_active", 1.0),
    "DCGM_FI_PROF_PCIE_RX_BYTES": ("pcie_rx_bytes_per_s", 1.0),
    "DCGM_FI_PROF_PCIE_TX_BYTES": ("pcie_tx_bytes_per_s", 1.0),
}


def dcgm_samples(series: list[RawSeries], now: float, source: str = "dcgm") -> list[Sample]:
    """dcgm-exporter series -> GPU samples with NVML's names, labelled by GPU index."""
    samples: list[Sample] = []
    free: dict[str, float] = {}
    used: dict[str, float] = {}
    for s in series:
        labels = dict(s.labels)
        gpu = labels.get("gpu", labels.get("GPU_I_ID", "0"))
        if s.name == "DCGM_FI_DEV_FB_FREE":
            free[gpu] = s.value * 1024.0 * 1024.0
            continue
        if s.name not in DCGM_FIELDS:
            continue
        name, scale = DCGM_FIELDS[s.name]
        if name == "memory_used_bytes":
            used[gpu] = s.value * scale
        samples.append(Sample(now, source, name, s.value * scale, (("gpu", gpu),)))
    for gpu, free_bytes in free.items():
        if gpu in used:
            samples.append(Sample(now, source, "memory_total_bytes", used[gpu] + free_bytes, (("gpu", gpu),)))
    return samples
