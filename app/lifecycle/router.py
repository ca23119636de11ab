from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth import service as auth_service
from app.auth.dependencies import TEAM_SCOPED, Approver, Pipeline, Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.lifecycle import service as lifecycle_service
from app.lifecycle.schemas import (
    ApprovalCreate,
    ApprovalRead,
    ClassificationCreate,
    ClassificationRead,
    GateCheckCreate,
    GateCheckRead,
    Override,
    ReleaseRead,
    StageAt,
    TransitionCreate,
    TransitionRead,
    WaiverCreate,
    WaiverRead,
)
from app.models import Approval, GateCheck, Transition, Waiver
from app.openapi_docs import errors
from app.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    IdPath,
    Limit,
    Page,
    decode_int_cursor,
    next_cursor_for,
)
from app.readiness.schemas import BlockingItemRead
from app.readiness.tiers import Tier
from app.schemas import Actor, Release, UtcDateTime
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(prefix="/v1/systems/{key}", tags=["lifecycle"])


def _release(version: str | None, uri: str | None) -> Release | None:
    return Release(version=version, uri=uri) if version is not None else None


def _transition_read(key: str, row: Transition) -> TransitionRead:
    return TransitionRead(
        id=row.id or 0,
        system_key=key,
        from_stage=row.from_stage,
        to_stage=row.to_stage,
        reason=row.reason,
        release=_release(row.release_version, row.release_uri),
        gate=row.gate,
        score=row.score,
        policy_version=row.policy_version,
        blocking=[BlockingItemRead.model_validate(item) for item in row.blocking],
        override=Override(justification=row.override_justification)
        if row.override_justification
        else None,
        actor=Actor.recorded(row),
        occurred_at=row.occurred_at,
    )


def _gate_check_read(
    key: str, current_stage: str, row: GateCheck, decision: lifecycle_service.GateDecision
) -> GateCheckRead:
    return GateCheckRead(
        id=row.id or 0,
        system_key=key,
        allowed=row.allowed,
        current_stage=current_stage,
        target_stage=row.target_stage,
        move_valid=decision.move_valid,
        release_move=decision.release_move,
        score=row.score,
        required_score=row.required_score or 0.0,
        blocking=[BlockingItemRead.model_validate(item) for item in row.blocking],
        policy_version=row.policy_version,
        release=_release(row.release_version, row.release_uri),
        checked_at=row.checked_at,
    )


def _approval_read(key: str, row: Approval, revoked_keys: frozenset[int]) -> ApprovalRead:
    return ApprovalRead(
        id=row.id or 0,
        system_key=key,
        target_stage=row.target_stage,
        decision=row.decision,
        comment=row.comment,
        approver=Actor.recorded(row, "approver"),
        revoked=row.approver_id in revoked_keys,
        created_at=row.created_at,
    )


def _waiver_read(key: str, row: Waiver, now: datetime, revoked_keys: frozenset[int]) -> WaiverRead:
    granted_by_revoked = row.granted_by_id in revoked_keys
    return WaiverRead(
        id=row.id or 0,
        system_key=key,
        control=row.control,
        justification=row.justification,
        expires_at=row.expires_at,
        active=row.revoked_at is None and row.expires_at > now and not granted_by_revoked,
        granted_by=Actor.recorded(row, "granted_by"),
        granted_by_revoked=granted_by_revoked,
        granted_at=row.granted_at,
        revoked_at=row.revoked_at,
        revoked_by=Actor.recorded(row, "revoked_by") if row.revoked_by_name else None,
    )


@router.post(
    "/gate-checks",
    summary="Check a gate",
    description=(
        "May this system move to the target stage now? Evaluates the gate afresh (score,"
        " required controls, pilot rule, approvals, findings) and records what was answered."
        " A target stage the system is in already is a release move (`release_move`), judged"
        " by that stage's gate; with a `release`, release-bound controls count only evidence"
        " naming it or naming none (`release_evidence_missing`)."
    ),
    responses=errors(400, 401, 403, 404, 422),
)
def check_gate(
    actor: Pipeline, key: KeyPath, body: GateCheckCreate, database: DatabaseDep, now: Now
) -> GateCheckRead:
    with write_transaction(database) as session:
        system = system_service.get_system(session, key)
        check, decision = lifecycle_service.check_gate(
            session, system=system, body=body, actor=actor, now=now
        )
        return _gate_check_read(key, system.stage, check, decision)


@router.post(
    "/transitions",
    status_code=status.HTTP_201_CREATED,
    summary="Move a system to another stage, or a release into its stage",
    description=(
        "Re-evaluates the gate in the same transaction that changes the stage. A `to_stage`"
        " the system is in already records a release move: it names a `release`, judged by"
        " that stage's gate for that release; naming the release already current there"
        " answers 200 with the transition that recorded it and records nothing. 409"
        " problems: `gate-denied` (with `blocking`), `invalid-transition` (also a move to the"
        " current stage without a release), `stage-conflict` (when `expected_stage` differs"
        " or another move won). `override` is for admins only. A team-scoped identity moves"
        " only its teams' systems (403 `out-of-scope`)."
    ),
    responses={
        200: {
            "description": "The release named is current in that stage already: the"
            " transition that recorded it; nothing new is recorded.",
            "model": TransitionRead,
        },
        **errors(400, 401, 403, 404, 409, 422),
    },
    openapi_extra=TEAM_SCOPED,
)
def create_transition(
    actor: Pipeline,
    key: KeyPath,
    body: TransitionCreate,
    database: DatabaseDep,
    now: Now,
    response: Response,
) -> TransitionRead:
    with write_transaction(database) as session:
        system = system_service.lock_for_write(session, key, actor=actor, now=now)
        moved = lifecycle_service.transition(
            session, system=system, body=body, actor=actor, now=now
        )
    if not moved.recorded:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/systems/{key}/transitions/{moved.transition.id}"
    return _transition_read(key, moved.transition)


@router.get(
    "/transitions",
    summary="List a system's transitions",
    description="Every stage change, newest first.",
    responses=errors(400, 401, 403, 404, 422),
)
def list_transitions(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TransitionRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = lifecycle_service.list_transitions(
            session, system=system, before=before, limit=limit
        )
    return Page(
        items=[_transition_read(key, row) for row in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )


@router.get(
    "/releases",
    summary="List a system's releases",
    description=(
        "One item per period a named release spent in a stage, newest first, from the"
        " transitions: it entered with the transition that named it and left with the"
        " system's next transition (`left_at` null: it is there now)."
    ),
    responses=errors(400, 401, 403, 404, 422),
)
def list_releases(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ReleaseRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        periods = lifecycle_service.list_releases(
            session, system=system, before=before, limit=limit
        )
    return Page(
        items=[ReleaseRead.of(period.transition, period.left_at) for period in periods[:limit]],
        next_cursor=next_cursor_for(periods, limit, lambda period: period.transition.id or 0),
    )


@router.get(
    "/stage",
    summary="Get the stage at a moment",
    description="Which stage (and release) the system was in at `at`, from its transitions.",
    responses=errors(401, 403, 404, 422),
)
def get_stage_at(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    now: Now,
    at: Annotated[
        UtcDateTime | None, Query(description="RFC 3339 with a zone; default now.")
    ] = None,
) -> StageAt:
    moment = at or now
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        stage, last = lifecycle_service.stage_at(session, system=system, at=moment)
    return StageAt(
        system_key=key,
        at=moment,
        stage=stage,
        release=_release(last.release_version, last.release_uri) if last else None,
        since=last.occurred_at if last else system.created_at,
    )


@router.post(
    "/approvals",
    status_code=status.HTTP_201_CREATED,
    summary="Approve or reject a target stage",
    description=(
        "Counts toward the gate while newer than the last transition and within the"
        " policy's validity, and while the approver's key is not revoked. Approvers are"
        " counted by person (a key's `person`, an OIDC identity's issuer and subject): a"
        " reject blocks until the same person approves again."
        " Approvers of any team may approve; where the tier's policy asks for"
        " `independent_approval` (high and critical by default), an approver scoped to the"
        " system's owner team is refused (403 `not-independent`)."
    ),
    responses=errors(400, 401, 403, 404, 422),
)
def create_approval(
    actor: Approver, key: KeyPath, body: ApprovalCreate, database: DatabaseDep, now: Now
) -> ApprovalRead:
    with write_transaction(database) as session:
        auth_service.hold_active_key(session, actor)
        system = system_service.lock_system(session, key, now=now)
        row = lifecycle_service.record_approval(
            session, system=system, body=body, actor=actor, now=now
        )
    # The key is held active until the commit: a revocation comes after it.
    return _approval_read(key, row, frozenset())


@router.post(
    "/classification",
    status_code=status.HTTP_201_CREATED,
    summary="Confirm a system's risk tier",
    description=(
        "A person confirms the tier the system has now (409 `tier-mismatch` for another"
        " tier). The policy's `classification_confirmed_for` gates (production by default)"
        " block with `classification_unconfirmed` until then, and again after any tier"
        " change. Independence as for approvals: where the tier's policy asks for"
        " `independent_approval`, an approver scoped to the owner team is refused (403"
        " `not-independent`)."
    ),
    responses=errors(400, 401, 403, 404, 409, 422),
)
def confirm_classification(
    actor: Approver, key: KeyPath, body: ClassificationCreate, database: DatabaseDep, now: Now
) -> ClassificationRead:
    with write_transaction(database) as session:
        system = system_service.lock_system(session, key, now=now)
        row = lifecycle_service.confirm_classification(
            session, system=system, body=body, actor=actor, now=now
        )
    return ClassificationRead(
        id=row.id or 0,
        system_key=key,
        tier=Tier(row.tier),
        comment=row.comment,
        confirmed_by=Actor.recorded(row, "confirmed_by"),
        confirmed_at=row.confirmed_at,
    )


@router.get(
    "/approvals",
    summary="List a system's approvals",
    description=(
        "Every approval and rejection, newest first; `revoked` marks those given with an API"
        " key since revoked (its approvals no longer count; its rejects still block)."
    ),
    responses=errors(400, 401, 403, 404, 422),
)
def list_approvals(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ApprovalRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = lifecycle_service.list_approvals(session, system=system, before=before, limit=limit)
        revoked = auth_service.revoked_among(session, [row.approver_id for row in rows])
    return Page(
        items=[_approval_read(key, row, revoked) for row in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )


@router.post(
    "/waivers",
    status_code=status.HTTP_201_CREATED,
    summary="Waive a control",
    description=(
        "Counts the control as met in gates, shown as `waived`, until `expires_at` (at most"
        " the policy's limit, 90 days) or revocation. Controls the policy marks non-waivable"
        " for the tier are refused (422). A team-scoped approver waives only for its teams'"
        " systems (403 `out-of-scope`)."
    ),
    responses=errors(400, 401, 403, 404, 422),
    openapi_extra=TEAM_SCOPED,
)
def create_waiver(
    actor: Approver,
    key: KeyPath,
    body: WaiverCreate,
    database: DatabaseDep,
    now: Now,
    response: Response,
) -> WaiverRead:
    with write_transaction(database) as session:
        auth_service.hold_active_key(session, actor)
        system = system_service.lock_for_write(session, key, actor=actor, now=now)
        row = lifecycle_service.grant_waiver(
            session, system=system, body=body, actor=actor, now=now
        )
    response.headers["Location"] = f"/v1/systems/{key}/waivers/{row.id}"
    # The key is held active until the commit: a revocation comes after it.
    return _waiver_read(key, row, now, frozenset())


@router.get(
    "/waivers",
    summary="List a system's waivers",
    description=(
        "Every waiver, newest first, with whether it is active now: not expired, not revoked,"
        " and not granted with an API key since revoked (`granted_by_revoked`)."
    ),
    responses=errors(400, 401, 403, 404, 422),
)
def list_waivers(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    now: Now,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[WaiverRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = lifecycle_service.list_waivers(session, system=system, before=before, limit=limit)
        revoked = auth_service.revoked_among(session, [row.granted_by_id for row in rows])
    return Page(
        items=[_waiver_read(key, row, now, revoked) for row in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda row: row.id or 0),
    )


@router.delete(
    "/waivers/{waiver_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a waiver",
    description=(
        "The control counts as it really is from now on; the revocation is recorded. A"
        " team-scoped approver revokes only for its teams' systems (403 `out-of-scope`)."
    ),
    responses=errors(401, 403, 404, 422),
    openapi_extra=TEAM_SCOPED,
)
def revoke_waiver(
    actor: Approver, key: KeyPath, waiver_id: IdPath, database: DatabaseDep, now: Now
) -> None:
    with write_transaction(database) as session:
        system = system_service.lock_for_write(session, key, actor=actor, now=now)
        lifecycle_service.revoke_waiver(
            session, system=system, waiver_id=waiver_id, actor=actor, now=now
        )
