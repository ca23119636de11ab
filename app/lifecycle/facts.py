"""Loads what approvals and waivers contribute to a readiness evaluation, for many systems
in a few queries."""

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType

from sqlalchemy import bindparam, func, select
from sqlmodel import Session, col

from app.auth import scope
from app.lifecycle.stages import GateStage
from app.models import Approval, Transition, Waiver
from app.models.queries import PerSystemQuery
from app.readiness.scoring import ApprovalFacts

# Built once and run on the session's connection: every write evaluates readiness, and
# building and running these through the ORM cost more than the queries themselves.
_ACTIVE_WAIVERS = PerSystemQuery(
    lambda of_systems: select(
        col(Waiver.system_id), col(Waiver.control), col(Waiver.expires_at)
    ).where(
        of_systems(col(Waiver.system_id)),
        col(Waiver.revoked_at).is_(None),
        col(Waiver.expires_at) > bindparam("now"),
    )
)
_LAST_TRANSITIONS = PerSystemQuery(
    lambda of_systems: select(col(Transition.system_id), col(Transition.occurred_at)).where(
        col(Transition.id).in_(
            select(func.max(Transition.id))
            .where(of_systems(col(Transition.system_id)))
            .group_by(col(Transition.system_id))
        )
    )
)
_APPROVALS = PerSystemQuery(
    lambda of_systems: (
        select(
            col(Approval.system_id),
            col(Approval.target_stage),
            col(Approval.approver_id),
            col(Approval.approver_issuer),
            col(Approval.approver_subject),
            col(Approval.approver_name),
            col(Approval.approver_teams),
            col(Approval.decision),
            col(Approval.created_at),
        )
        .where(of_systems(col(Approval.system_id)))
        .order_by(col(Approval.id))
    )
)


def active_waivers(
    session: Session, system_ids: list[int], *, now: datetime
) -> dict[int, dict[str, datetime]]:
    found: dict[int, dict[str, datetime]] = defaultdict(dict)
    rows = _ACTIVE_WAIVERS.rows(session.connection(), system_ids, now=now)
    for system_id, control, expires_at in rows:
        # Two waivers of one control: the later expiry is the one that matters.
        current = found[system_id].get(control)
        found[system_id][control] = max(expires_at, current) if current else expires_at
    return found


def last_transitions(session: Session, system_ids: list[int]) -> dict[int, datetime]:
    """When each system last moved: the time of its newest transition by commit order."""
    rows = _LAST_TRANSITIONS.rows(session.connection(), system_ids)
    return dict(rows.all())


NO_APPROVALS: Mapping[GateStage, ApprovalFacts] = MappingProxyType(
    {stage: ApprovalFacts() for stage in GateStage}
)


def approval_facts(
    session: Session,
    system_ids: list[int],
    *,
    now: datetime,
    validity_days: int,
    independent_of: Mapping[int, str | None],
) -> dict[int, Mapping[GateStage, ApprovalFacts]]:
    """Per system and target stage: the approvers whose latest decision is a valid approve,
    and those whose latest decision is a reject.

    An approval counts only when newer than the system's last transition and within the
    policy's validity. A reject blocks until its approver approves again, whatever moved
    in between: a human "no" is not cleared by a transition.

    `independent_of` names the systems whose tier now needs independent approval, with
    their owner team: there an approve counts only from an approver outside that team,
    judged as the system is now, so raising its tier or moving its owner after the
    approval cannot turn an insider's approval into an independent one.
    """
    since = last_transitions(session, system_ids)
    validity = timedelta(days=validity_days)
    rows = _APPROVALS.rows(session.connection(), system_ids)
    # Each approver's latest decision, keyed by who they are: an API key's id, or an OIDC
    # identity's issuer and subject (its name may change from token to token), or else
    # the name: (decision, created_at, name).
    latest: dict[tuple[int, str, object], tuple[str, datetime, str]] = {}
    for system_id, stage, key_id, issuer, subject, name, teams, decision, created_at in rows:
        who = key_id if key_id is not None else (issuer, subject) if subject else name
        if (
            decision == "approve"
            and system_id in independent_of
            and not scope.independent_of(teams, independent_of[system_id])
        ):
            # Not an approval this tier accepts; it leaves the approver's earlier say as it was.
            continue
        latest[(system_id, stage, who)] = (decision, created_at, name)

    approvers: dict[tuple[int, str], list[datetime]] = defaultdict(list)
    rejected: dict[tuple[int, str], list[str]] = defaultdict(list)
    for (system_id, stage, _), (decision, created_at, name) in latest.items():
        if decision == "reject":
            rejected[(system_id, stage)].append(name)
            continue
        moved = since.get(system_id)
        fresh = moved is None or created_at > moved
        if fresh and created_at + validity > now:
            approvers[(system_id, stage)].append(created_at + validity)

    decided = {system_id for system_id, _ in approvers} | {system_id for system_id, _ in rejected}
    return {
        system_id: {
            stage: ApprovalFacts(
                approvers=len(approvers[(system_id, stage.value)]),
                rejected_by=tuple(sorted(rejected[(system_id, stage.value)])),
                expires_at=tuple(approvers[(system_id, stage.value)]),
            )
            for stage in GateStage
        }
        if system_id in decided
        # Most systems have no decision that counts: one shared answer, not one each.
        else NO_APPROVALS
        for system_id in system_ids
    }
