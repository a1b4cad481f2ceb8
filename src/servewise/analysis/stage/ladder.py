"""The stage ladder: four stages in order, and what each optimizes for and must not overdo.

Its own module because both the checklist (the first stage at which an item matters) and the placement
(which stage the evidence puts a team at) are written in these terms, and neither owns the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum


class Stage(IntEnum):
    PROTOTYPE = 0
    EARLY_PRODUCT = 1
    GROWTH_PRODUCTION = 2
    MATURE_PRODUCTION = 3

    @property
    def label(self) -> str:
        return ("prototype", "early product", "growth production", "mature production")[self]


# The article's table: what to optimize for at each stage, and what not to overdo.
STAGE_GUIDE: Mapping[Stage, tuple[str, str]] = {
    Stage.PROTOTYPE: ("speed, learning, real workload discovery", "heavy platform architecture"),
    Stage.EARLY_PRODUCT: (
        "basic repeatability and deployment hygiene",
        "optimizing for scale you have not seen yet",
    ),
    Stage.GROWTH_PRODUCTION: (
        "measured scaling and bottleneck removal",
        "keeping the same lightweight path after it is clearly insufficient",
    ),
    Stage.MATURE_PRODUCTION: (
        "reliability, capacity planning, cost discipline",
        "pretending prototype-grade flexibility is still enough",
    ),
}
