"""Pilot evaluation (docs/domain.md, Pilots): a pure function of the criteria and the latest
value of each metric."""

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic_core import CoreSchema

from app.readiness.scoring import round_score


class Op(StrEnum):
    ge = ">="
    le = "<="
    gt = ">"
    lt = "<"

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        # Names for generated clients (`Op.GE` rather than `Op.VALUE_0`).
        schema = handler(core_schema)
        handler.resolve_ref_schema(schema)["x-enum-varnames"] = [op.name.upper() for op in cls]
        return schema


COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.ge: operator.ge,
    Op.le: operator.le,
    Op.gt: operator.gt,
    Op.lt: operator.lt,
}
# Ops for which bigger values are better: their warning bound must lie below the target.
HIGHER_IS_BETTER = frozenset({Op.ge, Op.gt})


class CriterionResult(StrEnum):
    passed = "pass"
    warning = "warning"
    failed = "fail"
    pending = "pending"


class Outcome(StrEnum):
    passed = "pass"
    warning = "warning"
    failed = "fail"


POINTS = {CriterionResult.passed: 1.0, CriterionResult.warning: 0.5, CriterionResult.failed: 0.0}
PASS_SCORE = 90.0
WARNING_SCORE = 75.0


@dataclass(frozen=True)
class Criterion:
    metric: str
    op: Op
    target: float
    warning: float | None = None
    weight: float = 1.0
    key: bool = False


@dataclass(frozen=True)
class Evaluation:
    results: tuple[CriterionResult, ...]
    score: float | None
    outcome: Outcome | None


def warning_is_lenient(criterion: Criterion) -> bool:
    """A warning bound must be easier to meet than the target."""
    if criterion.warning is None:
        return True
    if criterion.op in HIGHER_IS_BETTER:
        return criterion.warning < criterion.target
    return criterion.warning > criterion.target


def judge(criterion: Criterion, value: float | None, *, concluded: bool) -> CriterionResult:
    if value is None:
        return CriterionResult.failed if concluded else CriterionResult.pending
    compare = COMPARE[criterion.op]
    if compare(value, criterion.target):
        return CriterionResult.passed
    if criterion.warning is not None and compare(value, criterion.warning):
        return CriterionResult.warning
    return CriterionResult.failed


def evaluate(
    criteria: Sequence[Criterion], latest: Mapping[str, float], *, concluded: bool
) -> Evaluation:
    """Score over the judged criteria; the outcome once nothing is pending.

    A running pilot with metrics still missing has a provisional score and no outcome:
    its outcome is decided when every criterion has a value or the pilot is concluded.
    """
    results = tuple(
        judge(criterion, latest.get(criterion.metric), concluded=concluded)
        for criterion in criteria
    )
    judged = [
        (criterion, result)
        for criterion, result in zip(criteria, results, strict=True)
        if result is not CriterionResult.pending
    ]
    weight = sum(criterion.weight for criterion, _ in judged)
    if not judged or weight <= 0:
        return Evaluation(results, None, None)
    score = round_score(100 * sum(c.weight * POINTS[r] for c, r in judged) / weight)
    if len(judged) < len(criteria):
        return Evaluation(results, score, None)
    if any(c.key and r is CriterionResult.failed for c, r in judged):
        outcome = Outcome.failed
    elif score >= PASS_SCORE:
        outcome = Outcome.passed
    elif score >= WARNING_SCORE:
        outcome = Outcome.warning
    else:
        outcome = Outcome.failed
    return Evaluation(results, score, outcome)
