from fastapi import APIRouter, Response, status

from app.auth import service as auth_service
from app.auth.dependencies import Admin
from app.auth.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.flows import key_revocation
from app.models import ApiKey
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

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])


def _read(key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(key, from_attributes=True)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    description="Creates a key with a role. The secret is in this response only.",
    responses=errors(400, 401, 403, 422),
)
def create_api_key(
    actor: Admin, body: ApiKeyCreate, database: DatabaseDep, now: Now, response: Response
) -> ApiKeyCreated:
    with write_transaction(database) as session:
        key, secret = auth_service.create_key(
            session,
            name=body.name,
            role=body.role,
            teams=body.teams,
            person=body.person,
            actor=actor,
            now=now,
        )
    response.headers["Location"] = f"/v1/api-keys/{key.id}"
    return ApiKeyCreated(**_read(key).model_dump(), key=secret)


@router.get(
    "",
    summary="List API keys",
    description="Every key, oldest first, revoked ones included; never a secret.",
    responses=errors(400, 401, 403, 422),
)
def list_api_keys(
    _actor: Admin,
    database: DatabaseDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ApiKeyRead]:
    after = decode_int_cursor(cursor)
    with read_transaction(database) as session:
        rows = auth_service.list_keys(session, after=after, limit=limit)
    return Page(
        items=[_read(key) for key in rows[:limit]],
        next_cursor=next_cursor_for(rows, limit, lambda key: key.id or 0),
    )


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
    description=(
        "Requests with the key get 401 from now on, and its approvals and waivers stop"
        " counting at once (its rejects stand; evidence it recorded stays). Revoking twice"
        " is harmless."
    ),
    responses=errors(401, 403, 404, 422),
)
def revoke_api_key(actor: Admin, key_id: IdPath, database: DatabaseDep, now: Now) -> None:
    with write_transaction(database) as session:
        key_revocation.revoke(session, key_id=key_id, actor=actor, now=now)
