"""Telemetry: samplers that run beside a bench on the run clock, and the map from engine metric names.

Every reading is a :class:`servewise.records.Sample` ``(t, source, name, value, labels)``, ``t`` on
``time.perf_counter()`` like the request records. Sources and names (rates are per second between ticks):

``host``
    ``cpu_percent{cpu}``, ``cpu_percent_total`` (mean over cores), ``cpu_count``, ``cpu_iowait_percent``,
    ``load1``, ``mem_total_bytes``, ``mem_used_bytes``, ``mem_available_bytes``, ``swap_used_bytes``,
    ``disk_read_bytes_per_s``, ``disk_write_bytes_per_s``, ``disk_busy_percent`` (busiest disk),
    ``net_rx_bytes_per_s{iface}``, ``net_tx_bytes_per_s{iface}``, ``net_drops_per_s{iface}``,
    ``net_errors_per_s{iface}``, ``net_speed_bytes_per_s{iface}`` (only when the link reports a speed),
    ``tcp_retrans_per_s``, ``tcp_retrans_ratio``. Every interface that is up, loopback included;
    ``net_target_iface{iface}`` = 1 marks the one the target's traffic takes.
``process`` (the server's whole process tree)
    ``cpu_percent`` (100 = one core), ``cpu_percent_max_proc`` (busiest single process),
    ``cpu_cores_available``, ``rss_bytes``, ``threads``, ``procs``, ``read_bytes_per_s``,
    ``write_bytes_per_s``,
    ``involuntary_ctx_switches_per_s``.
``client`` (the load generator; label ``worker`` = index or ``parent``)
    from here: ``cpu_percent``, ``rss_bytes``, ``involuntary_ctx_switches_per_s``, ``cpu_cores_available``;
    from bench's workers: ``loop_lag_ms``, ``in_flight``, ``schedule_lag_ms`` (per-interval p99).
``gpu`` (NVML, label ``gpu``) and ``dcgm`` (dcgm-exporter, same names)
    ``utilization_percent``, ``memory_utilization_percent``, ``memory_used_bytes``, ``memory_total_bytes``,
    ``power_watts``, ``power_limit_watts``, ``sm_clock_mhz``, ``sm_clock_max_mhz``, ``clock_event_reasons``
    (bitmask), ``temperature_c``, ``pcie_rx_bytes_per_s``, ``pcie_tx_bytes_per_s``, and where the GPU has
    GPM / DCGM profiling: ``sm_active``, ``dram_active`` (0..1), ``tensor_active`` (DCGM only).
``metrics`` (the target's Prometheus /metrics)
    canonical signals: ``requests_running``, ``requests_waiting``, ``requests_swapped``, ``kv_cache_usage``
    (0..1), ``preemptions_total``, ``prompt_tokens_total``, ``generation_tokens_total``,
    ``requests_finished_total``, ``requests_failed_total``, ``server_ttft_seconds_sum/_count``,
    ``queue_time_seconds_sum/_count``, ``e2e_seconds_sum/_count``, ``step_seconds_sum/_count`` (one decode
    step as a running request sees it: the engine's inter-token latency, TGI's decode forward pass,
    llama.cpp's decode time per predicted token), where an engine counts them ``steps_total`` and
    ``batch_per_step_mean`` (llama.cpp: decode calls and busy slots per call since start), the prefix cache's
    ``prefix_cache_queries_total`` and ``prefix_cache_hits_total`` (prompt tokens looked up in it / served
    from it) or, where an engine has only a gauge, ``prefix_cache_hit_rate`` (0..1) (counters are cumulative,
    as the engine reports them), plus every raw series as ``raw:<exposition name>`` with its labels
    (histogram buckets excepted). The per-engine map (vLLM, SGLang, TGI, Triton, llama.cpp, infinity) is
    :data:`servewise.telemetry.exposition.ENGINE_RULES`.
"""

from servewise.telemetry.exposition import (
    ENGINE_RULES,
    canonical_signals,
    engine_from_metrics,
    parse_exposition,
)
from servewise.telemetry.session import TelemetrySession, local_port

__all__ = [
    "ENGINE_RULES",
    "TelemetrySession",
    "canonical_signals",
    "engine_from_metrics",
    "local_port",
    "parse_exposition",
]
