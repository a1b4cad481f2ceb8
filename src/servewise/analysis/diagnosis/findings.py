"""The resources a diagnosis reads, the thresholds its rules use, and the finding each rule returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from servewise.results.diagnosis import FindingResult, FindingStatus


class Resource(StrEnum):
    LOAD_GENERATOR = "load_generator"
    NETWORK = "network"
    SERVER_CPU = "server_cpu"
    GPU_COMPUTE = "gpu_compute"
    GPU_MEMORY_BANDWIDTH = "gpu_memory_bandwidth"
    KV_CAPACITY = "vram_kv"
    ADMISSION_QUEUE = "admission_queue"
    DISK_IO = "disk_io"
    ERRORS = "errors"


RESOURCE_LABELS: dict[str, str] = {
    Resource.LOAD_GENERATOR: "load generator",
    Resource.NETWORK: "network",
    Resource.SERVER_CPU: "server CPU",
    Resource.GPU_COMPUTE: "GPU compute",
    Resource.GPU_MEMORY_BANDWIDTH: "GPU memory bandwidth",
    Resource.KV_CAPACITY: "VRAM / KV capacity",
    Resource.ADMISSION_QUEUE: "admission queue",
    Resource.DISK_IO: "disk I/O",
    Resource.ERRORS: "errors",
    "none": "none",
}

NO_BOTTLENECK = "none"

# Thresholds, in one place so the evidence strings and the tests read the same numbers.
CPU_SATURATED = 0.85  # share of the cores the server may use
CPU_BUSY = 0.60
HOST_CPU_SATURATED = 90.0
GPU_ACTIVE_SATURATED = 0.80
GPU_ACTIVE_BUSY = 0.50
DRAM_ACTIVE_SATURATED = 0.70
DRAM_ACTIVE_BUSY = 0.40
TENSOR_ACTIVE_BUSY = 0.30  # tensor pipes of a GPU doing matmuls, not waiting on memory
POWER_SATURATED = 0.80
KV_FULL = 0.90
KV_HIGH = 0.80
WAITING_OFTEN = 0.20
HELD_FOR_KV = 0.5  # of the waiting ticks, the share where the free KV could not take one more request
MIN_HELD_TICKS = 3  # waiting ticks beside running requests needed before that share is read
QUEUE_SHARE = 0.30
DISK_BUSY = 80.0
ERROR_RATE_BOTTLENECK = 0.05
ERROR_RATE_CONTRIBUTING = 0.005
NET_LINK_SATURATED = 0.80
NET_DROPS_PER_S = 100.0  # packets the interface drops a second (median): a link losing traffic
NET_MIN_BYTES = 64_000.0  # a link carrying less than this per second is not the one under test
NET_RTT_GROWTH_MS = 10.0  # the connect round trip under load over its idle value: queueing on the path


@dataclass
class Finding:
    """One resource's USE reading. ``score`` (0..1) ranks bottlenecks against each other."""

    resource: str
    verdict: FindingStatus
    evidence: str
    utilisation: str | None = None
    saturation: str | None = None
    errors: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    score: float = 0.0
    cause: str | None = None  # the load generator's: why it fell behind ("cpu" | "starved" | "outside")
    read_on: str | None = None  # "server" | "client"; None with no data
    source: str | None = (
        None  # what read it: "node_exporter http://gpu-box:9100/metrics", "engine /metrics" ...
    )

    def result(self) -> FindingResult:
        return FindingResult(
            resource=str(self.resource), verdict=self.verdict, evidence=self.evidence,
            utilisation=self.utilisation, saturation=self.saturation, errors=self.errors,
            numbers=self.numbers, score=self.score, read_on=self.read_on, source=self.source,
        )  # fmt: skip
