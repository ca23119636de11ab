import pytest

from app.pilots.evaluation import (
    Criterion,
    CriterionResult,
    Op,
    Outcome,
    evaluate,
    judge,
    warning_is_lenient,
)

PASS, WARN, FAIL, PENDING = (
    CriterionResult.passed,
    CriterionResult.warning,
    CriterionResult.failed,
    CriterionResult.pending,
)


@pytest.mark.parametrize(
    ("op", "target", "warning", "value", "expected"),
    [
        # >= : equal to the target passes, equal to the warning bound warns
        (Op.ge, 0.9, 0.8, 0.9, PASS),
        (Op.ge, 0.9, 0.8, 0.95, PASS),
        (Op.ge, 0.9, 0.8, 0.89, WARN),
        (Op.ge, 0.9, 0.8, 0.8, WARN),
        (Op.ge, 0.9, 0.8, 0.79, FAIL),
        (Op.ge, 0.9, None, 0.89, FAIL),
        # > : equal to the target is not enough
        (Op.gt, 10, 5, 10, WARN),
        (Op.gt, 10, 5, 10.01, PASS),
        (Op.gt, 10, 5, 5, FAIL),
        (Op.gt, 10, 5, 5.5, WARN),
        # <= : lower is better
        (Op.le, 2.0, 3.0, 2.0, PASS),
        (Op.le, 2.0, 3.0, 1.0, PASS),
        (Op.le, 2.0, 3.0, 3.0, WARN),
        (Op.le, 2.0, 3.0, 3.01, FAIL),
        # <
        (Op.lt, 2.0, 3.0, 2.0, WARN),
        (Op.lt, 2.0, 3.0, 1.99, PASS),
        (Op.lt, 2.0, 3.0, 3.0, FAIL),
        (Op.lt, 2.0, None, 2.0, FAIL),
    ],
)
def test_boundaries_per_operator(
    op: Op, target: float, warning: float | None, value: float, expected: CriterionResult
) -> None:
    assert judge(Criterion("m", op, target, warning), value, concluded=False) is expected


def test_missing_is_pending_while_running_and_fails_once_concluded() -> None:
    criterion = Criterion("m", Op.ge, 1)
    assert judge(criterion, None, concluded=False) is PENDING
    assert judge(criterion, None, concluded=True) is FAIL


@pytest.mark.parametrize(
    ("op", "target", "warning", "lenient"),
    [
        (Op.ge, 0.9, 0.8, True),
        (Op.ge, 0.9, 0.9, False),
        (Op.ge, 0.9, 0.95, False),
        (Op.gt, 5, 4, True),
        (Op.gt, 5, 6, False),
        (Op.le, 2, 3, True),
        (Op.le, 2, 2, False),
        (Op.lt, 2, 1, False),
        (Op.ge, 0.9, None, True),
    ],
)
def test_warning_must_be_on_the_lenient_side(
    op: Op, target: float, warning: float | None, lenient: bool
) -> None:
    assert warning_is_lenient(Criterion("m", op, target, warning)) is lenient


def three(*weights: float, key: int | None = None) -> list[Criterion]:
    return [
        Criterion(f"m{index}", Op.ge, 10, 5, weight, key == index)
        for index, weight in enumerate(weights)
    ]


PASSING, WARNING, FAILING = 10.0, 5.0, 0.0


def test_all_pass_is_pass() -> None:
    result = evaluate(three(1, 1, 1), {"m0": PASSING, "m1": PASSING, "m2": PASSING}, concluded=True)
    assert (result.score, result.outcome) == (100.0, Outcome.passed)


def test_weight_two_warning_with_two_passes_is_warning_at_75() -> None:
    result = evaluate(three(2, 1, 1), {"m0": WARNING, "m1": PASSING, "m2": PASSING}, concluded=True)
    assert (result.score, result.outcome) == (75.0, Outcome.warning)


def test_warning_fail_and_pass_is_fail_at_50() -> None:
    result = evaluate(three(1, 1, 1), {"m0": WARNING, "m1": FAILING, "m2": PASSING}, concluded=True)
    assert (result.score, result.outcome) == (50.0, Outcome.failed)


def test_a_failing_key_criterion_fails_the_pilot() -> None:
    criteria = three(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, key=3)
    latest = {f"m{index}": PASSING for index in range(10)} | {"m3": FAILING}
    result = evaluate(criteria, latest, concluded=True)
    assert result.score == 90.0  # would pass on score alone
    assert result.outcome is Outcome.failed


def test_outcome_thresholds() -> None:
    criteria = three(*[1] * 20)

    def with_fails(count: int) -> Outcome | None:
        latest = {f"m{index}": FAILING if index < count else PASSING for index in range(20)}
        return evaluate(criteria, latest, concluded=True).outcome

    assert with_fails(2) is Outcome.passed  # 90
    assert with_fails(3) is Outcome.warning  # 85
    assert with_fails(5) is Outcome.warning  # 75
    assert with_fails(6) is Outcome.failed  # 70


def test_running_with_missing_metrics_has_a_provisional_score_and_no_outcome() -> None:
    running = evaluate(three(1, 1, 1), {"m0": PASSING}, concluded=False)
    assert running.results == (PASS, PENDING, PENDING)
    assert (running.score, running.outcome) == (100.0, None)
    concluded = evaluate(three(1, 1, 1), {"m0": PASSING}, concluded=True)
    assert concluded.results == (PASS, FAIL, FAIL)
    assert (concluded.score, concluded.outcome) == (33.3, Outcome.failed)
    nothing = evaluate(three(1), {}, concluded=False)
    assert (nothing.score, nothing.outcome) == (None, None)
