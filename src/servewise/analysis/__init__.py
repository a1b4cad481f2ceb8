"""Pure functions over stored data: metrics, goodput, diagnosis, gate statistics, stage assessment."""
