"""The words every domain package shares: lifecycle stages, the stages that have a readiness
gate, and risk tiers. Plain enums at the bottom of the import graph, so that policies,
readiness, lifecycle and pilots can all name them without depending on one another."""

from enum import StrEnum


class Stage(StrEnum):
    proposed = "proposed"
    pilot = "pilot"
    production = "production"
    suspended = "suspended"
    retired = "retired"


class GateStage(StrEnum):
    """The stages that have a readiness gate."""

    pilot = "pilot"
    production = "production"


class Tier(StrEnum):
    minimal = "minimal"
    limited = "limited"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return TIER_ORDER.index(self)


TIER_ORDER: tuple[Tier, ...] = (Tier.minimal, Tier.limited, Tier.high, Tier.critical)
