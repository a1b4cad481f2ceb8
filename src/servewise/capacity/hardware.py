"""The GPU catalog: data-sheet figures and indicative prices, loaded from ``data/hardware.yaml``.

Users add GPUs from their own YAML/JSON file (same shape) and override prices with flags, because
prices differ by provider and contract far more than any spec figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from servewise.capacity.errors import CapacityError, unknown_name

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class Gpu:
    """One accelerator. ``vram_gb`` is the nominal size, read as GiB like the driver reports it.

    Tensor peaks are dense (no sparsity); ``fp8_tflops``/``fp4_tflops`` are None where the GPU has no tensor
    cores for that format (it then runs such weights dequantized, at the 16-bit peak)."""

    name: str
    label: str
    vram_gb: float
    memory_bandwidth_gbs: float
    bf16_tflops: float
    fp8_tflops: float | None
    tdp_w: float
    interconnect: str
    interconnect_gbs: float
    #: PCIe cards bridged in pairs (H100 NVL, RTX 3090): NVLink bandwidth (GB/s, one way) between the two GPUs
    #: of a pair; a TP2 all-reduce stays on the bridge, a wider one crosses PCIe (``interconnect``).
    pair_link_gbs: float | None
    price_per_hour: float | None
    price_source: str = ""
    price_date: str = ""
    aliases: tuple[str, ...] = ()
    fp4_tflops: float | None = None

    @property
    def vram_bytes(self) -> float:
        return self.vram_gb * GIB

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth_gbs * 1e9


def normalize_name(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


_FIELDS = {
    "label": str,
    "vram_gb": float,
    "memory_bandwidth_gbs": float,
    "bf16_tflops": float,
    "fp8_tflops": float,
    "fp4_tflops": float,
    "tdp_w": float,
    "interconnect": str,
    "interconnect_gbs": float,
    "pair_link_gbs": float,
    "price_per_hour": float,
    "price_source": str,
    "price_date": str,
}
_REQUIRED = ("vram_gb", "memory_bandwidth_gbs", "bf16_tflops")


def _gpu_from_dict(name: str, raw: dict[str, Any], origin: str) -> Gpu:
    missing = [key for key in _REQUIRED if raw.get(key) is None]
    if missing:
        raise CapacityError(f"{origin}: GPU {name!r} needs {', '.join(missing)}")
    unknown = set(raw) - set(_FIELDS) - {"aliases", "spec_source"}
    if unknown:
        raise CapacityError(f"{origin}: GPU {name!r} has unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, kind in _FIELDS.items():
        value = raw.get(key)
        try:
            values[key] = None if value is None else kind(value)
        except (TypeError, ValueError):
            raise CapacityError(f"{origin}: GPU {name!r}: {key} must be a {kind.__name__}, got {value!r}") from None
    return Gpu(
        name=name,
        label=values["label"] or name,
        vram_gb=values["vram_gb"],
        memory_bandwidth_gbs=values["memory_bandwidth_gbs"],
        bf16_tflops=values["bf16_tflops"],
        fp8_tflops=values["fp8_tflops"],
        fp4_tflops=values["fp4_tflops"],
        tdp_w=values["tdp_w"] or 0.0,
        interconnect=values["interconnect"] or "PCIe",
        interconnect_gbs=values["interconnect_gbs"] or 32.0,
        pair_link_gbs=values["pair_link_gbs"],
        price_per_hour=values["price_per_hour"],
        price_source=values["price_source"] or "",
        price_date=values["price_date"] or "",
        aliases=tuple(normalize_name(a) for a in raw.get("aliases") or ()),
    )


def read_data_file(path: Path) -> dict[str, Any]:
    """A user's YAML or JSON file; one clear error when it is missing or malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CapacityError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CapacityError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(data, dict):
        raise CapacityError(f"{path}: expected a mapping at the top level")
    return data


class GpuCatalog:
    """Name -> Gpu, with aliases and close-match errors."""

    def __init__(self, gpus: dict[str, Gpu]) -> None:
        self.gpus = dict(gpus)
        self._aliases = {alias: gpu.name for gpu in gpus.values() for alias in gpu.aliases}

    def names(self) -> list[str]:
        return sorted(self.gpus)

    def get(self, name: str) -> Gpu:
        key = normalize_name(name)
        key = self._aliases.get(key, key)
        if key not in self.gpus:
            raise unknown_name("GPU", name, [*self.gpus, *self._aliases])
        return self.gpus[key]

    def with_prices(self, prices: dict[str, float]) -> GpuCatalog:
        """A copy where the named GPUs cost what the user pays."""
        gpus = dict(self.gpus)
        for name, price in prices.items():
            gpu = self.get(name)
            gpus[gpu.name] = replace(gpu, price_per_hour=price, price_source="user override", price_date="")
        return GpuCatalog(gpus)

    def with_file(self, path: Path) -> GpuCatalog:
        """A copy with the GPUs (new or replacing) and ``prices`` of a user's YAML/JSON file."""
        data = read_data_file(path)
        gpus = dict(self.gpus)
        for name, raw in (data.get("gpus") or {}).items():
            if not isinstance(raw, dict):
                raise CapacityError(f"{path}: GPU {name!r} must be a mapping of fields")
            gpus[normalize_name(name)] = _gpu_from_dict(normalize_name(name), raw, str(path))
        catalog = GpuCatalog(gpus)
        prices = data.get("prices") or {}
        try:
            return catalog.with_prices({name: float(price) for name, price in prices.items()})
        except (TypeError, ValueError):
            raise CapacityError(f"{path}: prices must map GPU names to numbers") from None


@cache
def builtin_catalog() -> GpuCatalog:
    text = resources.files("servewise.capacity").joinpath("data/hardware.yaml").read_text()
    raw = yaml.safe_load(text)["gpus"]
    return GpuCatalog({name: _gpu_from_dict(name, fields, "hardware.yaml") for name, fields in raw.items()})


@dataclass(frozen=True, slots=True)
class AllReducePrior:
    """How close a ring all-reduce gets to the data-sheet link bandwidth, and its cost per ring step."""

    kind: str
    bus_bandwidth_fraction: float
    hop_latency_s: float

    def latency_s(self, num_gpus: int, extra_hop_s: float = 0.0) -> float:
        """The fixed part of one ring all-reduce: 2(n-1) steps, each paying the hop latency (plus ``extra_hop_s``)."""
        return 2.0 * (num_gpus - 1) * (self.hop_latency_s + extra_hop_s) if num_gpus > 1 else 0.0

    def transfer_s(self, nbytes: float, num_gpus: int, link_gbs: float) -> float:
        """The bandwidth part: each GPU sends and receives 2(n-1)/n of the buffer at the achievable bus bandwidth."""
        if num_gpus <= 1:
            return 0.0
        return 2.0 * (num_gpus - 1) / num_gpus * nbytes / (self.bus_bandwidth_fraction * link_gbs * 1e9)

    def allreduce_s(self, nbytes: float, num_gpus: int, link_gbs: float, extra_hop_s: float = 0.0) -> float:
        """One ring all-reduce of ``nbytes`` over ``num_gpus`` GPUs."""
        return self.latency_s(num_gpus, extra_hop_s) + self.transfer_s(nbytes, num_gpus, link_gbs)


@cache
def _allreduce_priors() -> dict[str, AllReducePrior]:
    text = resources.files("servewise.capacity").joinpath("data/hardware.yaml").read_text()
    raw = yaml.safe_load(text)["interconnects"]
    return {kind: AllReducePrior(kind, float(v["bus_bandwidth_fraction"]), float(v["hop_latency_us"]) * 1e-6)
            for kind, v in raw.items()}


def allreduce_prior(gpu: Gpu) -> AllReducePrior:
    """The prior for the GPU's interconnect kind (``hardware.yaml`` ``interconnects``); unknown kinds count as PCIe,
    the slowest path a server always has."""
    priors = _allreduce_priors()
    link = gpu.interconnect.strip().lower()
    return next((p for kind, p in priors.items() if link.startswith(kind)), priors["pcie"])


def tensor_parallel_link(gpu: Gpu, num_gpus: int) -> tuple[AllReducePrior, float]:
    """The all-reduce prior and link bandwidth (GB/s, one way) a ``num_gpus``-wide tensor-parallel group uses:
    a bridged pair's NVLink for two GPUs that have one, else the GPU's interconnect."""
    if num_gpus == 2 and gpu.pair_link_gbs:
        return _allreduce_priors()["nvlink"], gpu.pair_link_gbs
    return allreduce_prior(gpu), gpu.interconnect_gbs


def parse_prices(items: list[str]) -> dict[str, float]:
    """``["h100-sxm=2.49", "a100-sxm-80gb=1.5"]`` (also comma-joined) -> {name: price}."""
    prices: dict[str, float] = {}
    for item in (part.strip() for text in items for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        try:
            price = float(value.strip().lstrip("$"))
        except ValueError:
            price = -1.0
        if not sep or not name.strip() or price < 0:
            raise CapacityError(f"--price: expected GPU=DOLLARS_PER_HOUR like h100-sxm=2.49, got {item!r}")
        prices[name.strip()] = price
    return prices
