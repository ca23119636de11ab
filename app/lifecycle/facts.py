"""Loads what approvals and waivers contribute to a readiness evaluation, for many systems
in a few queries."""

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlmodel import Session, col

from app.lifecycle.stages import GateStage
from app.models import Approval, Transition, Waiver
from app.readiness.scoring import ApprovalFacts


def active_waivers(
    session: Session, system_ids: list[int], *, now: datetime
) -> dict[int, dict[str, datetime]]:
    found: dict[int, dict[str, datetime]] = defaultdict(dict)
    rows = session.execute(
        select(col(Waiver.system_id), col(Waiver.control), col(Waiver.expires_at)).where(
            col(Waiver.system_id).in_(system_ids),
            col(Waiver.revoked_at).is_(None),
            col(Waiver.expires_at) > now,
        )
    )
    for system_id, control, expires_at in rows:
        # Two waivers of one control: the later expiry is the one that matters.
        current = found[system_id].get(control)
        found[system_id][control] = max(expires_at, current) if current else expires_at
    return found


def last_transitions(session: Session, system_ids: list[int]) -> dict[int, datetime]:
    """When each system last moved: the time of its newest transition by commit order."""
    newest = (
        select(func.max(Transition.id))
        .where(col(Transition.system_id).in_(system_ids))
        .group_by(col(Transition.system_id))
    )
    rows = session.execute(
        select(col(Transition.system_id), col(Transition.occurred_at)).where(
            col(Transition.id).in_(newest)
        )
    )
    return {row.system_id: row.occurred_at for row in rows}


def approval_facts(
    session: Session, system_ids: list[int], *, now: datetime, validity_days: int
) -> dict[int, dict[GateStage, ApprovalFacts]]:
    """Per system and target stage: the approvers whose latest decision is a valid approve,
    and those whose latest decision is a reject.

    An approval counts only when newer than the system's last transition and within the
    policy's validity. A reject blocks until its approver approves again, whatever moved
    in between: a human "no" is not cleared by a transition.
    """
    since = last_transitions(session, system_ids)
    validity = timedelta(days=validity_days)
    rows = session.execute(
        select(Approval).where(col(Approval.system_id).in_(system_ids)).order_by(col(Approval.id))
    ).scalars()
    latest: dict[tuple[int, str, int | None, str], Approval] = {}
    for approval in rows:
        # Keyed by approver id, or by name for keys that no longer exist.
        key = (
            approval.system_id,
            approval.target_stage,
            approval.approver_id,
            approval.approver_name,
        )
        latest[key] = approval

    approvers: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    rejected: dict[tuple[int, str], list[str]] = defaultdict(list)
    for (system_id, stage, _, name), approval in latest.items():
        if approval.decision == "reject":
            rejected[(system_id, stage)].append(name)
            continue
        moved = since.get(system_id)
        fresh = moved is None or approval.created_at > moved
        if fresh and approval.created_at + validity > now:
            approvers[(system_id, stage)].append(approval.created_at + validity)

    return {
        system_id: {
            stage: ApprovalFacts(
                approvers=len(approvers[(system_id, stage.value)]),
                rejected_by=tuple(sorted(rejected[(system_id, stage.value)])),
                expires_at=tuple(approvers[(system_id, stage.value)]),
            )
            for stage in GateStage
        }
        for system_id in system_ids
    }
