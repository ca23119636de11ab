from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.pilots.evaluation import Criterion, CriterionResult, Op, Outcome, warning_is_lenient
from app.schemas import KeysByPattern, ReleaseVersion, RequestModel, UtcDateTime, WholeNumber

MAX_CRITERIA = 50
MAX_METRICS_PER_RESULT = 200

MetricName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$")
]
# Strict: a number, not a string or a boolean that looks like one (whole numbers are fine).
FiniteNumber = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class Finding(StrEnum):
    poor_data = "poor_data"
    weak_ownership = "weak_ownership"
    unclear_workflow = "unclear_workflow"
    missing_training = "missing_training"
    no_risk_review = "no_risk_review"
    no_measurable_value = "no_measurable_value"


class CriterionWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: MetricName
    op: Op
    target: FiniteNumber
    warning: FiniteNumber | None = Field(
        default=None, description="A lenient bound: meeting only it counts half."
    )
    weight: FiniteNumber = Field(default=1.0, gt=0, le=1000)
    key: StrictBool = Field(default=False, description="Failing a key criterion fails the pilot.")

    @model_validator(mode="after")
    def _lenient_warning(self) -> Self:
        if not warning_is_lenient(self.to_criterion()):
            side = "below" if self.op in (Op.ge, Op.gt) else "above"
            raise ValueError(f"warning must lie {side} the target for op {self.op.value}")
        return self

    def to_criterion(self) -> Criterion:
        return Criterion(self.metric, self.op, self.target, self.warning, self.weight, self.key)


class PilotCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Leeds claims team, 6 weeks",
                    "objective": "Faster triage without more misrouted claims",
                    "planned_end": "2026-05-15T00:00:00Z",
                    "criteria": [
                        {
                            "metric": "precision",
                            "op": ">=",
                            "target": 0.9,
                            "warning": 0.85,
                            "key": True,
                        },
                        {"metric": "median_minutes_saved", "op": ">=", "target": 5, "weight": 2},
                    ],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    objective: str | None = Field(default=None, max_length=5000)
    planned_end: UtcDateTime | None = None
    release: ReleaseVersion | None = Field(
        default=None,
        description="The release (model version) the pilot tries; the evidence its"
        " conclusion records names it.",
    )
    criteria: list[CriterionWrite] = Field(min_length=1, max_length=MAX_CRITERIA)

    @field_validator("criteria")
    @classmethod
    def _unique_metrics(cls, criteria: list[CriterionWrite]) -> list[CriterionWrite]:
        metrics = [criterion.metric for criterion in criteria]
        if len(set(metrics)) != len(metrics):
            raise ValueError("each metric may have one criterion")
        return criteria


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = Field(default=None, max_length=200)
    run_id: str | None = Field(default=None, max_length=200)
    url: str | None = Field(default=None, max_length=2000)


class ResultCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "metrics": {"precision": 0.93, "median_minutes_saved": 6.5},
                    "sample_size": 1200,
                    "window_start": "2026-04-01T00:00:00Z",
                    "window_end": "2026-04-08T00:00:00Z",
                    "source": {"pipeline": "claims-eval", "run_id": "4711"},
                    "findings": ["missing_training"],
                }
            ]
        },
    )

    metrics: Annotated[dict[MetricName, FiniteNumber], KeysByPattern] = Field(
        min_length=1, max_length=MAX_METRICS_PER_RESULT
    )
    sample_size: Annotated[int, Strict(), Field(ge=0, le=2**31 - 1), WholeNumber] | None = None
    window_start: UtcDateTime | None = None
    window_end: UtcDateTime | None = None
    source: Source | None = None
    findings: list[Finding] = Field(
        default_factory=list, max_length=len(Finding), json_schema_extra={"uniqueItems": True}
    )

    @model_validator(mode="after")
    def _window_in_order(self) -> Self:
        if self.window_start and self.window_end and self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        if len(set(self.findings)) != len(self.findings):
            raise ValueError("findings lists a finding twice")
        return self


class CriterionRead(BaseModel):
    metric: str
    op: Op
    target: float
    warning: float | None
    weight: float
    key: bool
    value: float | None = Field(description="The latest value posted for the metric.")
    result: CriterionResult


class FindingRead(BaseModel):
    finding: Finding
    control: str
    pilot_id: int
    result_id: int
    recorded_at: datetime
    open: bool = Field(description="Still blocks production: its control is not updated since.")


class PilotEvaluation(BaseModel):
    score: float | None = Field(description="Over the criteria that have a value.")
    outcome: Outcome | None = Field(description="Set once every criterion is judged.")
    criteria: list[CriterionRead]


class PilotRead(BaseModel):
    id: int
    system_key: str
    name: str
    objective: str | None
    planned_end: datetime | None
    release: str | None = Field(default=None, description="The release the pilot tries.")
    status: str = Field(description="running or concluded")
    overdue: bool = Field(description="Running past planned_end.")
    outcome: Outcome | None
    score: float | None
    criteria: list[CriterionRead]
    findings: list[FindingRead]
    unknown_metrics: list[str] = Field(description="Metrics posted that no criterion uses.")
    created_at: datetime
    concluded_at: datetime | None


class ResultRead(BaseModel):
    id: int
    pilot_id: int
    metrics: dict[str, float]
    sample_size: int | None
    window_start: datetime | None
    window_end: datetime | None
    source: dict[str, Any] | None
    findings: list[Finding]
    unknown_metrics: list[str] = Field(description="Metrics in this result no criterion uses.")
    recorded_at: datetime


class ResultRecorded(BaseModel):
    result: ResultRead
    evaluation: PilotEvaluation
