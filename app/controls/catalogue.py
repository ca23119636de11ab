"""The readiness controls: stable keys that policies, evidence and reports refer to."""

from dataclasses import dataclass
from enum import StrEnum


class SatisfiedBy(StrEnum):
    system_field = "system_field"
    evidence = "evidence"
    evidence_or_pilot = "evidence_or_pilot"


class ControlKey(StrEnum):
    purpose = "purpose"
    owner = "owner"
    scope = "scope"
    data_rules = "data_rules"
    data_quality = "data_quality"
    access_boundaries = "access_boundaries"
    risk_review = "risk_review"
    testing_evidence = "testing_evidence"
    measurable_value = "measurable_value"
    monitoring = "monitoring"
    support_plan = "support_plan"
    fallback_process = "fallback_process"
    human_oversight = "human_oversight"
    approval_path = "approval_path"
    training = "training"
    workflow = "workflow"
    rollout_plan = "rollout_plan"


@dataclass(frozen=True)
class Control:
    key: ControlKey
    title: str
    description: str
    satisfied_by: SatisfiedBy


CONTROLS: tuple[Control, ...] = (
    Control(ControlKey.purpose, "Purpose", "A clear, written purpose.", SatisfiedBy.system_field),
    Control(
        ControlKey.owner,
        "Owner",
        "A named accountable owner (team and contact).",
        SatisfiedBy.system_field,
    ),
    Control(
        ControlKey.scope,
        "Scope",
        "What the system may and may not do, and where it runs.",
        SatisfiedBy.system_field,
    ),
    Control(
        ControlKey.data_rules,
        "Data rules",
        "Data sources, retention, privacy rules.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.data_quality,
        "Data quality",
        "The data the system depends on has been checked.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.access_boundaries,
        "Access boundaries",
        "Who and what the system can reach; its permissions.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.risk_review,
        "Risk review",
        "A risk review was done and signed.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.testing_evidence,
        "Testing evidence",
        "Tests or evaluations show the system works well enough.",
        SatisfiedBy.evidence_or_pilot,
    ),
    Control(
        ControlKey.measurable_value,
        "Measurable value",
        "Value is measured against a baseline.",
        SatisfiedBy.evidence_or_pilot,
    ),
    Control(
        ControlKey.monitoring,
        "Monitoring",
        "Production monitoring and alerting exist.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.support_plan,
        "Support plan",
        "Who supports users and fixes incidents.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.fallback_process,
        "Fallback process",
        "What happens when the AI fails or is switched off.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.human_oversight,
        "Human oversight",
        "Humans supervise decisions in a defined way.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.approval_path,
        "Approval path",
        "Who approves go-live, and how it is recorded.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.training,
        "Training",
        "The people who use or operate the system are trained.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.workflow,
        "Workflow",
        "The business workflow around the system is defined.",
        SatisfiedBy.evidence,
    ),
    Control(
        ControlKey.rollout_plan,
        "Rollout plan",
        "Staged rollout, communication and a rollback plan.",
        SatisfiedBy.evidence,
    ),
)

CONTROL_KEYS: tuple[ControlKey, ...] = tuple(control.key for control in CONTROLS)
CONTROLS_BY_KEY: dict[str, Control] = {control.key: control for control in CONTROLS}
SYSTEM_FIELD_CONTROLS: frozenset[str] = frozenset(
    control.key for control in CONTROLS if control.satisfied_by is SatisfiedBy.system_field
)
EVIDENCE_CONTROLS: tuple[ControlKey, ...] = tuple(
    key for key in CONTROL_KEYS if key not in SYSTEM_FIELD_CONTROLS
)

assert len(CONTROLS) == len(ControlKey) == 17
