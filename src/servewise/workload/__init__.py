"""What to send and when: token lengths, prompts, datasets and arrival schedules (no HTTP here)."""

from servewise.workload.arrivals import arrival_times
from servewise.workload.lengths import sample_lengths
from servewise.workload.plan import PlannedRequest, WorkloadPlan

__all__ = ["PlannedRequest", "WorkloadPlan", "arrival_times", "sample_lengths"]
