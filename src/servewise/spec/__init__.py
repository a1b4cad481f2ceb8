"""The run spec: what to send, to whom, how fast, and what counts as good enough."""

from servewise.spec.errors import SpecError
from servewise.spec.flags import build_spec
from servewise.spec.loading import load_spec_file, merge_spec
from servewise.spec.models import (
    Api,
    DatasetSpec,
    LengthSpec,
    LoadSpec,
    RunSpec,
    SharedPrefixSpec,
    SloSpec,
    SloTarget,
    SweepSpec,
    TargetSpec,
    TraceSpec,
    WorkloadSpec,
)
from servewise.spec.parse import (
    parse_duration,
    parse_labels,
    parse_length,
    parse_load,
    parse_shared_prefix,
    parse_slo,
)

__all__ = [
    "Api",
    "DatasetSpec",
    "LengthSpec",
    "LoadSpec",
    "RunSpec",
    "SharedPrefixSpec",
    "SloSpec",
    "SloTarget",
    "SpecError",
    "SweepSpec",
    "TargetSpec",
    "TraceSpec",
    "WorkloadSpec",
    "build_spec",
    "load_spec_file",
    "merge_spec",
    "parse_duration",
    "parse_labels",
    "parse_length",
    "parse_load",
    "parse_shared_prefix",
    "parse_slo",
]
