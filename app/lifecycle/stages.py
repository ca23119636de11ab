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
