"""The load engine: a precomputed schedule, paced by worker processes, measured at byte arrival."""
