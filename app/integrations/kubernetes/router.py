from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from app.auth.dependencies import Viewer
from app.clock import Now
from app.db import DatabaseDep, read_transaction, write_transaction
from app.errors import Problem, field_errors, is_malformed_json
from app.integrations.kubernetes import service as admission_service
from app.integrations.kubernetes.schemas import (
    ADMISSION_API_VERSION,
    ADMISSION_KIND,
    REVIEW_EXAMPLE,
    AdmissionReview,
    AdmissionReviewResponse,
)
from app.openapi_docs import errors

ADMISSION_PATH = "/v1/integrations/kubernetes/admission"


class AdmissionRoute(APIRoute):
    """A body that is JSON but no AdmissionReview v1 is 400 `invalid-admission-review`, not
    the 422 of other bodies: the API server sends a document Kubernetes defines, so a review
    this service cannot read is a malformed request, not a field its sender fixes. A body
    that is no JSON stays 400 `malformed-json`. (app.openapi_docs leaves the 422 out of the
    document for routes that set `validation_status`.)"""

    validation_status = 400

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                if is_malformed_json(exc):
                    raise
                detail, items = field_errors(exc)
                raise admission_service.InvalidAdmissionReview(
                    f"The body is not an {ADMISSION_KIND} {ADMISSION_API_VERSION} with a"
                    f" request and its uid: {detail}",
                    errors=items,
                ) from None

        return handle


router = APIRouter(tags=["integrations"], route_class=AdmissionRoute)


def _answer(uid: str, **response: Any) -> dict[str, Any]:
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": ADMISSION_KIND,
        "response": {"uid": uid, **response},
    }


_UID = REVIEW_EXAMPLE["request"]["uid"]
ANSWER_EXAMPLES: dict[str, Any] = {
    "allowed": {
        "summary": "The gate passes: admitted, and the gate check recorded",
        "value": _answer(
            _UID,
            allowed=True,
            auditAnnotations={
                "system": "claims-triage",
                "stage": "production",
                "gate-check": "118",
                "allowed": "true",
            },
        ),
    },
    "denied": {
        "summary": "The gate blocks: denied with each blocking item",
        "value": _answer(
            _UID,
            allowed=False,
            status={
                "code": 403,
                "reason": "Forbidden",
                "message": (
                    "readiness: claims-triage may not run as production (stage pilot, policy"
                    " v1, gate check 119): score 94.1 (needs 85), blocking: control_missing"
                    " monitoring; approvals_missing"
                ),
            },
            auditAnnotations={
                "system": "claims-triage",
                "stage": "production",
                "gate-check": "119",
                "allowed": "false",
            },
        ),
    },
    "not_annotated": {
        "summary": "No readiness/system annotation: admitted with a warning",
        "value": _answer(
            _UID,
            allowed=True,
            warnings=[
                "readiness: Deployment claims/batch-export has no readiness/system annotation;"
                " nothing was checked"
            ],
        ),
    },
}


@router.post(
    ADMISSION_PATH,
    summary="Review a Kubernetes admission",
    description=(
        "The validating admission webhook of `deploy/k8s/validating-webhook.yaml`: takes the"
        " AdmissionReview v1 the API server sends for a Deployment, StatefulSet or Pod and"
        " answers it, echoing `request.uid`. The object's annotations name what to gate:"
        " `readiness/system` (a system key), `readiness/stage` (`pilot` or `production`,"
        " default `production`) and optionally `readiness/release`, read from the object's"
        " metadata or, when that names no system, from its pod template. The gate is judged"
        " as `POST /v1/systems/{key}/gate-checks` judges it and recorded the same way"
        " (`gate.checked`), unless `request.dryRun` is true. Admitted when the gate check"
        " allows the move or the system is already in that stage and its gate passes. Every"
        " denial is `allowed: false` with `status.code` 403 and a message naming each"
        " blocking item's code and control; an unknown system or a stage without a gate is"
        " denied too. Admitted without a check: DELETE, subresources, and updates that"
        " change neither the pod template (a Pod's spec) nor the annotations; with a warning,"
        " objects without `readiness/system`. A body that is not an AdmissionReview v1 is 400"
        " (`malformed-json` or `invalid-admission-review`), never 422."
    ),
    responses={
        200: {
            "description": "The review answered: admitted or denied.",
            "content": {"application/json": {"examples": ANSWER_EXAMPLES}},
        },
        400: {
            "model": Problem,
            "description": (
                "The body is no JSON (`malformed-json`), or no AdmissionReview v1 with a"
                " request and its uid (`invalid-admission-review`, each bad field in `errors`)."
            ),
        },
        **errors(401, 403),
    },
    response_model_exclude_none=True,
)
def review_kubernetes_admission(
    actor: Viewer, review: AdmissionReview, database: DatabaseDep, now: Now
) -> AdmissionReviewResponse:
    request = review.request
    target = admission_service.read_target(request)
    if isinstance(target, admission_service.Target):
        dry_run = bool(request.dryRun)
        # A dry run writes nothing, so it needs no write transaction (nor SQLite's lock).
        transaction = read_transaction if dry_run else write_transaction
        with transaction(database) as session:
            answer = admission_service.decide(
                session, uid=request.uid, target=target, dry_run=dry_run, actor=actor, now=now
            )
    else:
        answer = target
    return AdmissionReviewResponse(response=answer)
