from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app.auth.dependencies import TEAM_SCOPED, Pipeline, Viewer
from app.clock import Now, get_now
from app.db import Database, DatabaseDep, read_transaction
from app.db.group_commit import BatchedWrite, run_batched_write
from app.evidence import service as evidence_service
from app.evidence.schemas import EvidenceRead, EvidenceWrite
from app.openapi_docs import errors
from app.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Page,
    decode_int_cursor,
    decode_str_cursor,
    next_cursor_for,
)
from app.systems import service as system_service
from app.systems.dependencies import KeyPath

router = APIRouter(prefix="/v1/systems/{key}/evidence", tags=["evidence"])

# Evidence PUTs that arrive together share a transaction on SQLite (`run_batched_write`):
# `record_many` writes them in order as if each were alone, and refuses a write that may
# not happen without failing the others.
RECORD_EVIDENCE: BatchedWrite[evidence_service.NewEvidence, EvidenceRead] = BatchedWrite(
    evidence_service.record_many
)

ControlPath = Annotated[
    str, Path(max_length=40, description="A control key from GET /v1/controls.")
]


# `async`: a pure check, resolved on the event loop without a worker thread.
async def evidence_control(control: ControlPath) -> str:
    evidence_service.check_evidence_control(control)
    return control


@router.put(
    "/{control}",
    summary="Record evidence for a control",
    description=(
        "Records a new version of the evidence for one control; it becomes the current one"
        " and readiness is re-evaluated. Every version is kept. `not_applicable` needs a"
        " summary saying why. An `expires_at` in the past is accepted and shows as stale."
        " A team-scoped identity records evidence only for its teams' systems (403"
        " `out-of-scope`), and controls the policy's `attested_by` names need that role or"
        " above (403 `attestation-role`; by default risk_review and approval_path need"
        " approver)."
    ),
    response_model=EvidenceRead,
    responses=errors(400, 401, 403, 404, 422),
    openapi_extra=TEAM_SCOPED,
)
async def record_evidence(
    actor: Pipeline,
    control: Annotated[str, Depends(evidence_control)],
    key: KeyPath,
    body: EvidenceWrite,
    request: Request,
) -> Response:
    # The write pipelines send most: `async`, so that on SQLite the PUTs that arrive
    # together are written together, on the event loop (`run_batched_write`). The
    # database and the clock come from the app's state, without a dependency each.
    new = evidence_service.NewEvidence(key, control, body, actor, get_now(request))
    database: Database = request.app.state.database
    written = await run_batched_write(database, RECORD_EVIDENCE, new)
    # Serialized here, once: returned as a model, it would be validated again first.
    return Response(content=written.model_dump_json(), media_type="application/json")


@router.get(
    "",
    summary="List current evidence",
    description="The current evidence of each control that has any, by control key.",
    responses=errors(400, 401, 403, 404, 422),
)
def list_current_evidence(
    _actor: Viewer,
    key: KeyPath,
    database: DatabaseDep,
    now: Now,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EvidenceRead]:
    after = decode_str_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = evidence_service.current(session, system=system, after_control=after, limit=limit)
        reader = evidence_service.EvidenceReader(session, system, now)
    return Page(
        items=[reader.read(evidence) for evidence in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda evidence: evidence.control),
    )


@router.get(
    "/{control}/history",
    summary="List every evidence version of a control",
    description="Every recorded version, newest first.",
    responses=errors(400, 401, 403, 404, 422),
)
def evidence_history(
    _actor: Viewer,
    key: KeyPath,
    control: ControlPath,
    database: DatabaseDep,
    now: Now,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[EvidenceRead]:
    before = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        system = system_service.get_system(session, key)
        rows = evidence_service.history(
            session, system=system, control=control, before_version=before, limit=limit
        )
        reader = evidence_service.EvidenceReader(session, system, now)
    return Page(
        items=[reader.read(evidence) for evidence in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda evidence: evidence.version),
    )
