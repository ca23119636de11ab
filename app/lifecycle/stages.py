"""The lifecycle's stage table: the moves allowed between stages and the gate each passes."""

# Defined in app.vocabulary, where readiness can name them without depending on the
# lifecycle; named here too, beside the moves between them.
from app.vocabulary import GateStage as GateStage
from app.vocabulary import Stage as Stage

# Each allowed move between stages and the gate it must pass (None: no gate). Besides these,
# a release may move within a stage with a gate (`is_release_move`). Everything else is
# invalid.
ALLOWED: dict[Stage, dict[Stage, GateStage | None]] = {
    Stage.proposed: {
        Stage.pilot: GateStage.pilot,
        Stage.production: GateStage.production,
        Stage.retired: None,
    },
    Stage.pilot: {
        Stage.production: GateStage.production,
        Stage.proposed: None,
        Stage.retired: None,
    },
    Stage.production: {
        Stage.suspended: None,
        Stage.pilot: None,
        Stage.retired: None,
    },
    Stage.suspended: {
        Stage.production: GateStage.production,
        Stage.pilot: GateStage.pilot,
        Stage.retired: None,
    },
    Stage.retired: {},
}

_GATE_STAGES = frozenset(stage.value for stage in GateStage)


class InvalidMove(ValueError):
    pass


def is_release_move(from_stage: Stage, to_stage: Stage) -> bool:
    """A move into the stage the system is already in: a new release entering it. Only the
    stages with a gate take releases; that gate judges each one."""
    return from_stage == to_stage and to_stage.value in _GATE_STAGES


def gate_for(from_stage: Stage, to_stage: Stage) -> GateStage | None:
    """The gate a move must pass (a release move, the gate of its own stage); raises
    InvalidMove for a move the lifecycle forbids."""
    if is_release_move(from_stage, to_stage):
        return GateStage(to_stage.value)
    moves = ALLOWED[from_stage]
    if to_stage not in moves:
        allowed = ", ".join(stage.value for stage in moves) or "none (retired is final)"
        raise InvalidMove(
            f"{from_stage.value} -> {to_stage.value} is not allowed; from"
            f" {from_stage.value}: {allowed}"
        )
    return moves[to_stage]
