from fastapi import APIRouter, Response, status

from app.auth.dependencies import Admin, Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.flows import policy_publication
from app.models import Policy
from app.openapi_docs import errors
from app.pagination import IdPath
from app.policies import service as policy_service
from app.policies.document import PolicyRules
from app.policies.schemas import PolicyCreate, PolicyRead

router = APIRouter(prefix="/v1/policies", tags=["policies"])


def _read(policy: Policy) -> PolicyRead:
    return PolicyRead(
        **policy_service.rules_of(policy).model_dump(),
        version=policy.version,
        active=policy.is_active,
        created_at=policy.created_at,
    )


@router.get(
    "/active",
    summary="Get the active policy",
    description="The policy version that readiness, gates and transitions use now.",
    responses=errors(401, 403, 404),
)
def get_active_policy(_actor: Viewer, database: DatabaseDep) -> PolicyRead:
    with read_transaction(database) as session:
        return _read(policy_service.active_policy(session))


@router.get(
    "/{version}",
    summary="Get a policy version",
    description="Any published version, active or not; versions never change.",
    responses=errors(401, 403, 404, 422),
)
def get_policy(_actor: Viewer, version: IdPath, database: DatabaseDep) -> PolicyRead:
    with read_transaction(database) as session:
        return _read(policy_service.get_policy(session, version))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Publish a policy version",
    description=(
        "Publishes a new immutable version. With `activate: true` it becomes the active"
        " policy at once and every system's readiness is re-evaluated against it."
    ),
    responses=errors(400, 401, 403, 409, 422),
)
def publish_policy(
    actor: Admin, body: PolicyCreate, database: DatabaseDep, now: Now, response: Response
) -> PolicyRead:
    rules = PolicyRules.model_validate(body.model_dump(exclude={"activate"}))
    with write_transaction(database) as session:
        policy = policy_publication.publish(
            session, rules=rules, activate=body.activate, actor=actor, now=now
        )
    response.headers["Location"] = f"/v1/policies/{policy.version}"
    return _read(policy)
