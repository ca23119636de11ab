import pytest

from app.lifecycle.stages import ALLOWED, GateStage, InvalidMove, Stage, gate_for, is_release_move

P, X = GateStage.pilot, GateStage.production
# docs/domain.md, Lifecycle: every allowed move and its gate; None means no gate.
EXPECTED: dict[tuple[Stage, Stage], GateStage | None] = {
    (Stage.proposed, Stage.pilot): P,
    (Stage.proposed, Stage.production): X,
    (Stage.pilot, Stage.production): X,
    (Stage.pilot, Stage.proposed): None,
    (Stage.production, Stage.suspended): None,
    (Stage.production, Stage.pilot): None,
    (Stage.suspended, Stage.production): X,
    (Stage.suspended, Stage.pilot): P,
    (Stage.proposed, Stage.retired): None,
    (Stage.pilot, Stage.retired): None,
    (Stage.production, Stage.retired): None,
    (Stage.suspended, Stage.retired): None,
}
# A release moving into the stage the system is in: that stage's gate judges it.
RELEASE_MOVES: dict[tuple[Stage, Stage], GateStage | None] = {
    (Stage.pilot, Stage.pilot): P,
    (Stage.production, Stage.production): X,
}


@pytest.mark.parametrize("from_stage", list(Stage))
@pytest.mark.parametrize("to_stage", list(Stage))
def test_every_pair_is_allowed_with_its_gate_or_rejected(
    from_stage: Stage, to_stage: Stage
) -> None:
    moves = {**EXPECTED, **RELEASE_MOVES}
    assert is_release_move(from_stage, to_stage) == ((from_stage, to_stage) in RELEASE_MOVES)
    if (from_stage, to_stage) in moves:
        assert gate_for(from_stage, to_stage) == moves[(from_stage, to_stage)]
    else:
        with pytest.raises(InvalidMove):
            gate_for(from_stage, to_stage)


def test_the_table_has_exactly_the_designed_moves() -> None:
    table = {(a, b): gate for a, moves in ALLOWED.items() for b, gate in moves.items()}
    assert table == EXPECTED
    assert ALLOWED[Stage.retired] == {}
