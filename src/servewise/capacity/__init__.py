"""Capacity: hardware and model catalogs, memory and performance models, a continuous-batching
simulator and the tier planner. Pure functions over plain data (reads only its own data files and a
config.json a user names)."""

from servewise.capacity.batching import BatchEngine, Seq, StepResult
from servewise.capacity.calibrate import Calibration, MeasuredRun, calibrate, measured_from_run
from servewise.capacity.engines import DEFAULT_ENGINE, PROFILES, EngineProfile, EngineSettings, engine_profile
from servewise.capacity.errors import CapacityError
from servewise.capacity.hardware import Gpu, GpuCatalog, builtin_catalog, parse_prices
from servewise.capacity.memory import (
    Deployment,
    EngineConfig,
    MemoryPlan,
    default_kv_precision,
    kv_bytes_per_token,
    memory_plan,
    smallest_fitting_tp,
    weight_bytes,
)
from servewise.capacity.models import ModelArch, builtin_models, from_hf_config, get_model
from servewise.capacity.perf import Efficiency, SteadyState, StepModel, fitted_efficiency, steady_state
from servewise.capacity.planner import (
    DEFAULT_TIERS,
    PlanRequest,
    PlanResult,
    SloLimit,
    TierResult,
    TierSpec,
    parse_prefix_hit,
    parse_tiers,
    plan,
)
from servewise.capacity.prefix_cache import PrefixCache, block_hashes
from servewise.capacity.simulator import (
    SimResult,
    closed_loop_starts,
    constant_arrivals,
    poisson_arrivals,
    simulate,
    simulate_users,
)
from servewise.capacity.speculative import Speculation, parse_speculation

__all__ = [
    "DEFAULT_ENGINE",
    "DEFAULT_TIERS",
    "PROFILES",
    "BatchEngine",
    "Calibration",
    "CapacityError",
    "Deployment",
    "Efficiency",
    "EngineConfig",
    "EngineProfile",
    "EngineSettings",
    "Gpu",
    "GpuCatalog",
    "MeasuredRun",
    "MemoryPlan",
    "ModelArch",
    "PlanRequest",
    "PlanResult",
    "PrefixCache",
    "Seq",
    "SimResult",
    "SloLimit",
    "Speculation",
    "SteadyState",
    "StepModel",
    "StepResult",
    "TierResult",
    "TierSpec",
    "block_hashes",
    "builtin_catalog",
    "builtin_models",
    "calibrate",
    "closed_loop_starts",
    "constant_arrivals",
    "default_kv_precision",
    "engine_profile",
    "fitted_efficiency",
    "from_hf_config",
    "get_model",
    "kv_bytes_per_token",
    "measured_from_run",
    "memory_plan",
    "parse_prefix_hit",
    "parse_prices",
    "parse_speculation",
    "parse_tiers",
    "plan",
    "poisson_arrivals",
    "simulate",
    "simulate_users",
    "smallest_fitting_tp",
    "steady_state",
    "weight_bytes",
]
