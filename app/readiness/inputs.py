"""The one loader of what a readiness evaluation reads besides the system row: current
evidence, active waivers, approvals, the latest concluded pilot and the recorded findings,
for one or many systems in a few queries.

Readiness reads these tables (app.models) itself rather than through the packages that
write them: app.lifecycle and app.pilots depend on readiness (they evaluate and store it),
so readiness must not depend on them. They import from here what they need of the same
facts: which findings are open, for a pilot's answer.
"""

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

from sqlalchemy import Select, bindparam, func, select, union
from sqlmodel import Session, col

from app.auth import scope
from app.models import (
    ApiKey,
    Approval,
    Evidence,
    Pilot,
    PilotResult,
    System,
    Transition,
    Waiver,
)
from app.models.queries import PerSystemQuery
from app.policies.service import ActiveRules
from app.readiness.scoring import (
    ApprovalFacts,
    EvidenceFact,
    EvidenceStatus,
    FindingFact,
    PilotFact,
    ReadinessFacts,
)
from app.readiness.tiers import Tier
from app.vocabulary import GateStage

# Every write re-evaluates and stores readiness, so these statements are built once and
# run on the session's connection: through the ORM, building and running them cost several
# times what SQLite spends on the queries.
_CURRENT_EVIDENCE = PerSystemQuery(
    lambda of_systems: select(
        col(Evidence.system_id),
        col(Evidence.control),
        col(Evidence.status),
        col(Evidence.recorded_at),
        col(Evidence.expires_at),
        col(Evidence.source),
        col(Evidence.release),
    ).where(of_systems(col(Evidence.system_id)), col(Evidence.is_current))
)
# A waiver or approval counts only while the key that gave it is not revoked: read with
# them, in the same statement, so a revocation committed in any process counts from the next
# evaluation on (a key's person never changes, so it is read the same way). Identities
# without a key (OIDC, the service) match no key row.
_GRANTING_KEY = ApiKey.__table__.alias("granting_key")  # type: ignore[attr-defined]
_APPROVING_KEY = ApiKey.__table__.alias("approving_key")  # type: ignore[attr-defined]
_ACTIVE_WAIVERS = PerSystemQuery(
    lambda of_systems: (
        select(col(Waiver.system_id), col(Waiver.control), col(Waiver.expires_at))
        .outerjoin(_GRANTING_KEY, _GRANTING_KEY.c.id == col(Waiver.granted_by_id))
        .where(
            of_systems(col(Waiver.system_id)),
            col(Waiver.revoked_at).is_(None),
            col(Waiver.expires_at) > bindparam("now"),
            _GRANTING_KEY.c.revoked_at.is_(None),
        )
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
            _APPROVING_KEY.c.person,
            _APPROVING_KEY.c.revoked_at.is_not(None),
        )
        .outerjoin(_APPROVING_KEY, _APPROVING_KEY.c.id == col(Approval.approver_id))
        .where(of_systems(col(Approval.system_id)))
        .order_by(col(Approval.id))
    )
)
_CONCLUDED_PILOTS = PerSystemQuery(
    lambda of_systems: (
        select(col(Pilot.system_id), col(Pilot.id), col(Pilot.outcome))
        .where(of_systems(col(Pilot.system_id)), col(Pilot.status) == "concluded")
        .order_by(col(Pilot.concluded_at), col(Pilot.id))
    )
)
_RECORDED_FINDINGS = PerSystemQuery(
    lambda of_systems: (
        select(
            col(Pilot.system_id),
            col(PilotResult.pilot_id),
            col(PilotResult.id),
            col(PilotResult.findings),
            col(PilotResult.recorded_at),
        )
        .join(Pilot, col(Pilot.id) == col(PilotResult.pilot_id))
        .where(of_systems(col(Pilot.system_id)))
        .order_by(col(PilotResult.id))
    )
)


# Evidence

_EVIDENCE_STATUS = {status.value: status for status in EvidenceStatus}


def _current_evidence(
    session: Session, system_ids: list[int]
) -> dict[int, dict[str, EvidenceFact]]:
    found: dict[int, dict[str, EvidenceFact]] = {system_id: {} for system_id in system_ids}
    # All rows at once: fetched one by one, fetching cost more than the facts.
    rows = _CURRENT_EVIDENCE.rows(session.connection(), system_ids).all()
    for system_id, control, status, recorded_at, expires_at, source, release in rows:
        found[system_id][control] = EvidenceFact(
            _EVIDENCE_STATUS[status], recorded_at, expires_at, source, release
        )
    return found


def _release_evidence(
    session: Session, system_id: int, controls: list[str], release: str
) -> dict[str, EvidenceFact]:
    """For these controls of one system, the latest version that counts for `release`: one
    naming it or naming none (scoring.counted_evidence says when it is read)."""
    rows = session.execute(
        select(
            col(Evidence.control),
            col(Evidence.status),
            col(Evidence.recorded_at),
            col(Evidence.expires_at),
            col(Evidence.source),
            col(Evidence.release),
        )
        .where(
            col(Evidence.system_id) == system_id,
            col(Evidence.control).in_(controls),
            (col(Evidence.release) == release) | col(Evidence.release).is_(None),
        )
        .order_by(col(Evidence.control), col(Evidence.version).desc())
    )
    found: dict[str, EvidenceFact] = {}
    for control, status, recorded_at, expires_at, source, named in rows:
        if control not in found:
            found[control] = EvidenceFact(
                _EVIDENCE_STATUS[status], recorded_at, expires_at, source, named
            )
    return found


# Waivers


def _active_waivers(
    session: Session, system_ids: list[int], *, now: datetime
) -> dict[int, dict[str, datetime]]:
    found: dict[int, dict[str, datetime]] = defaultdict(dict)
    rows = _ACTIVE_WAIVERS.rows(session.connection(), system_ids, now=now)
    for system_id, control, expires_at in rows:
        # Two waivers of one control: the later expiry is the one that matters.
        current = found[system_id].get(control)
        found[system_id][control] = max(expires_at, current) if current else expires_at
    return found


# Approvals


def _last_transitions(session: Session, system_ids: list[int]) -> dict[int, datetime]:
    """When each system last moved: the time of its newest transition by commit order."""
    rows = _LAST_TRANSITIONS.rows(session.connection(), system_ids)
    return dict(rows.all())


class Decision(NamedTuple):
    """An approver's latest decision on one gate of a system."""

    stage: str
    decision: str  # "approve" or "reject"
    created_at: datetime
    approver: str  # the approver's name, as a reject names who blocks


def approver_of(
    key_id: int | None, person: str | None, issuer: str | None, subject: str | None, name: str
) -> tuple[str, ...]:
    """Who an approver is, for counting distinct approvers: the person a key names (compared
    case-insensitively, as mail systems compare addresses in practice; erring this way can
    only count fewer approvers), else the key itself; an OIDC identity by issuer and subject
    (its name may change from token to token); else the name."""
    if key_id is not None:
        return ("person", person.casefold()) if person else ("key", str(key_id))
    if subject:
        return ("oidc", issuer or "", subject)
    return ("name", name)


def _latest_decisions(
    session: Session, system_ids: list[int], *, independent_of: Mapping[int, str | None]
) -> dict[int, list[Decision]]:
    """Per system, each approver's latest decision on each gate, in the order the approvers
    first decided. An approver is a person (`approver_of`): of two keys of one person, the
    later decision stands.

    `independent_of` names the systems whose tier now needs independent approval, with
    their owner team: there an approve counts only from an approver outside that team,
    judged as the system is now, so raising its tier or moving its owner after the
    approval cannot turn an insider's approval into an independent one.

    An approve given with a key since revoked does not count either, and leaves its
    person's earlier say as it was, so a stolen key's approve neither counts nor buries
    the person's own reject. A reject given with a revoked key stands: revoking a key
    takes back what it gave, and never opens a gate.
    """
    rows = _APPROVALS.rows(session.connection(), system_ids)
    latest: dict[tuple[int, str, tuple[str, ...]], Decision] = {}
    for (
        system_id,
        stage,
        key_id,
        issuer,
        subject,
        name,
        teams,
        decision,
        created_at,
        person,
        key_revoked,
    ) in rows:
        if decision == "approve":
            if key_revoked:
                continue
            if system_id in independent_of and not scope.independent_of(
                teams, independent_of[system_id]
            ):
                # Not an approval this tier accepts; it leaves the approver's earlier say as
                # it was.
                continue
        who = approver_of(key_id, person, issuer, subject, name)
        latest[(system_id, stage, who)] = Decision(stage, decision, created_at, name)
    found: dict[int, list[Decision]] = defaultdict(list)
    for (system_id, _, _), said in latest.items():
        found[system_id].append(said)
    return found


def granted_by_key(key_id: int, *, now: datetime) -> Select[tuple[int]]:
    """The systems whose answers may count what a key gave: an approve of it, or an active
    waiver it granted (found through their approver and granter indexes). Its rejects are
    left out: revoking the key leaves them standing."""
    approved = select(col(Approval.system_id)).where(
        col(Approval.approver_id) == key_id,
        col(Approval.approver_kind) == "api_key",
        col(Approval.decision) == "approve",
    )
    waived = select(col(Waiver.system_id)).where(
        col(Waiver.granted_by_id) == key_id,
        col(Waiver.granted_by_kind) == "api_key",
        col(Waiver.revoked_at).is_(None),
        col(Waiver.expires_at) > now,
    )
    return select(union(approved, waived).subquery().c.system_id)


NO_APPROVALS: Mapping[GateStage, ApprovalFacts] = MappingProxyType(
    {stage: ApprovalFacts() for stage in GateStage}
)


def _approvals(
    decisions: tuple[Decision, ...] | list[Decision],
    *,
    since: datetime | None,
    now: datetime,
    validity: timedelta,
) -> Mapping[GateStage, ApprovalFacts]:
    """Per target stage: the approvers whose latest decision is a valid approve, and those
    whose latest decision is a reject.

    An approval counts only when newer than the system's last transition (`since`) and
    within the policy's validity. A reject blocks until its approver approves again,
    whatever moved in between: a human "no" is not cleared by a transition.
    """
    if not decisions:
        return NO_APPROVALS
    approvers: dict[str, list[datetime]] = defaultdict(list)
    rejected: dict[str, list[str]] = defaultdict(list)
    for stage, decision, created_at, name in decisions:
        if decision == "reject":
            rejected[stage].append(name)
        elif (since is None or created_at > since) and created_at + validity > now:
            approvers[stage].append(created_at + validity)
    if not approvers and not rejected:
        # Most systems have no decision that counts: one shared answer, not one each.
        return NO_APPROVALS
    return {
        stage: ApprovalFacts(
            approvers=len(approvers[stage.value]),
            rejected_by=tuple(sorted(rejected[stage.value])),
            expires_at=tuple(approvers[stage.value]),
        )
        for stage in GateStage
    }


# Pilots and their findings

# docs/domain.md, Pilots: the control each organisational gap maps to.
FINDING_CONTROL: dict[str, str] = {
    "poor_data": "data_quality",
    "weak_ownership": "owner",
    "unclear_workflow": "workflow",
    "missing_training": "training",
    "no_risk_review": "risk_review",
    "no_measurable_value": "measurable_value",
}


@dataclass(frozen=True)
class RecordedFinding:
    finding: str
    control: str
    pilot_id: int
    result_id: int
    recorded_at: datetime


def _concluded_pilots(session: Session, system_ids: list[int]) -> dict[int, PilotFact]:
    """The latest concluded pilot of each system: the one the pilot rule looks at."""
    rows = _CONCLUDED_PILOTS.rows(session.connection(), system_ids)
    return {
        system_id: PilotFact(pilot_id=pilot_id or 0, outcome=outcome or "fail")
        for system_id, pilot_id, outcome in rows
    }


def recorded_findings(session: Session, system_ids: list[int]) -> dict[int, list[RecordedFinding]]:
    rows = _RECORDED_FINDINGS.rows(session.connection(), system_ids)
    found: dict[int, list[RecordedFinding]] = defaultdict(list)
    for system_id, pilot_id, result_id, findings, recorded_at in rows:
        for finding in findings:
            found[system_id].append(
                RecordedFinding(
                    finding, FINDING_CONTROL[finding], pilot_id, result_id or 0, recorded_at
                )
            )
    return found


def is_open(
    finding: RecordedFinding,
    evidence: Mapping[str, EvidenceFact],
    owner_updated_at: datetime | None,
) -> bool:
    """Open until its control is updated after it: new evidence, or for the owner a change.

    Evidence the same pilot recorded when it concluded does not count: a pilot that found
    no measurable value cannot clear that finding by its own measurable_value evidence.
    """
    if finding.control == "owner":
        updated = owner_updated_at
    else:
        fact = evidence.get(finding.control)
        own = fact is not None and fact.source == f"pilot:{finding.pilot_id}"
        updated = fact.recorded_at if fact and not own else None
    return updated is None or updated <= finding.recorded_at


def open_findings(
    findings: list[RecordedFinding],
    evidence: Mapping[str, EvidenceFact],
    owner_updated_at: datetime | None,
) -> tuple[FindingFact, ...]:
    return tuple(
        FindingFact(control=item.control, pilot_id=item.pilot_id, finding=item.finding)
        for item in findings
        if is_open(item, evidence, owner_updated_at)
    )


# All of a system's inputs


@dataclass
class Inputs:
    """What a system's evaluation reads besides the system row."""

    evidence: dict[str, EvidenceFact]
    waivers: dict[str, datetime] = field(default_factory=dict)
    approvals: Mapping[GateStage, ApprovalFacts] = field(default_factory=dict)
    pilot: PilotFact | None = None
    findings: list[RecordedFinding] = field(default_factory=list)
    # What `approvals` was judged from, so that a move in the same unit of work can judge
    # it again without a load (`moved`).
    moved_at: datetime | None = None
    decisions: tuple[Decision, ...] = ()
    # Loaded only when judging a release: see ReadinessFacts.release_evidence.
    release: str | None = None
    release_evidence: dict[str, EvidenceFact] = field(default_factory=dict)

    def moved(self, *, at: datetime, approval_validity_days: int) -> "Inputs":
        """The inputs as a load would read them at `at` (no earlier than this load's
        time), once the system has moved stage at `at`: approvals given before the move no
        longer count (rejects stand), and waivers that ended by then are gone. Nothing
        else a move changes is an input: the stage is read from the system row."""
        return replace(
            self,
            waivers={control: ends for control, ends in self.waivers.items() if ends > at},
            approvals=_approvals(
                self.decisions,
                since=at,
                now=at,
                validity=timedelta(days=approval_validity_days),
            ),
            moved_at=at,
        )


def load_inputs(
    session: Session,
    systems: list[System],
    policy: ActiveRules,
    now: datetime,
    *,
    release: str | None = None,
) -> dict[int, Inputs]:
    """Each system's inputs as of `now`, by system id: six queries whatever the number of
    systems (the one loader; every evaluation starts here). Judging a release, a seventh
    per system whose release-bound evidence names another release."""
    system_ids = [system.id for system in systems if system.id is not None]
    # Judged from the rows as they stand in this unit of work, a change not yet flushed
    # included: whose approvals count depends on the tier and owner team now.
    independent_of = {
        system.id: system.owner_team
        for system in systems
        if system.id is not None and policy.rules.tier(system.risk_tier).independent_approval
    }
    with session.no_autoflush:
        evidence = _current_evidence(session, system_ids)
        waivers = _active_waivers(session, system_ids, now=now)
        moved_at = _last_transitions(session, system_ids)
        decisions = _latest_decisions(session, system_ids, independent_of=independent_of)
        pilots = _concluded_pilots(session, system_ids)
        findings = recorded_findings(session, system_ids)
    validity = timedelta(days=policy.rules.approval_validity_days)
    loaded = {}
    for system_id in system_ids:
        decided = tuple(decisions.get(system_id, ()))
        since = moved_at.get(system_id)
        loaded[system_id] = Inputs(
            evidence=evidence[system_id],
            waivers=waivers.get(system_id, {}),
            approvals=_approvals(decided, since=since, now=now, validity=validity),
            pilot=pilots.get(system_id),
            findings=findings.get(system_id, []),
            moved_at=since,
            decisions=decided,
        )
    if release is not None:
        bound = policy.rules.release_bound
        for system_id, inputs in loaded.items():
            inputs.release = release
            of_others = [
                control.value
                for control in bound
                if (fact := inputs.evidence.get(control.value)) is not None
                and fact.release not in (None, release)
            ]
            if of_others:
                with session.no_autoflush:
                    inputs.release_evidence = _release_evidence(
                        session, system_id, of_others, release
                    )
    return loaded


def facts_for(system: System, inputs: Inputs, now: datetime) -> ReadinessFacts:
    return ReadinessFacts(
        tier=Tier(system.risk_tier),
        system_fields={
            "purpose": bool(system.purpose and system.purpose.strip()),
            "owner": bool(system.owner_team and system.owner_contact),
            "scope": bool(system.scope and system.scope.strip()),
        },
        evidence=inputs.evidence,
        waivers=inputs.waivers,
        approvals=inputs.approvals,
        pilot=inputs.pilot,
        open_findings=open_findings(inputs.findings, inputs.evidence, system.owner_updated_at),
        classification_confirmed=system.classification_confirmed_tier == system.risk_tier,
        now=now,
        release=inputs.release,
        release_evidence=inputs.release_evidence,
    )
