from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from app.clock import get_now
from app.config import Settings
from app.db import Database, write_transaction
from app.errors import PROBLEM_MEDIA_TYPE
from app.integrations.mlflow import client, service, signature
from app.integrations.mlflow.schemas import (
    AliasCreated,
    MlflowWebhookDelivery,
    MlflowWebhookResult,
)
from app.openapi_docs import NO_SECURITY, WEBHOOK_SIGNATURE_EXTENSION, errors, own_json_body

router = APIRouter(prefix="/v1/integrations/mlflow", tags=["integrations"])

_HEADERS: list[dict[str, Any]] = [
    {
        "name": signature.SIGNATURE_HEADER,
        "in": "header",
        "required": True,
        "description": (
            "`v1,` and the base64 HMAC-SHA256, keyed with the webhook's secret"
            " (READINESS_MLFLOW_WEBHOOK_SECRET), of `<delivery id>.<timestamp>.<body>`: the"
            " two headers below and the body exactly as sent. MLflow sends it when the webhook"
            " has a secret."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": 1000},
        "example": "v1,3q5XrI8kMFtc5X7Lr0n3mcQ4b0r5Vf0yJ2GmqfYf6N8=",
    },
    {
        "name": signature.DELIVERY_ID_HEADER,
        "in": "header",
        "required": True,
        "description": (
            "MLflow's id of this delivery (a UUID). A delivery id taken before is answered"
            " `replayed`, and nothing is done again."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": signature.MAX_DELIVERY_ID_LENGTH,
        },
        "example": "0b7f4a52-7f35-4f7e-9f3c-2f4cf5d1d6a1",
    },
    {
        "name": signature.TIMESTAMP_HEADER,
        "in": "header",
        "required": True,
        "description": (
            "When MLflow signed the delivery, in Unix seconds; more than 5 minutes away from"
            " the service's clock is refused (401)."
        ),
        "schema": {"type": "string", "maxLength": 12, "pattern": "^[0-9]{1,12}$"},
        "example": "1772442000",
    },
]

_UNAUTHORIZED: dict[str, Any] = {
    "description": (
        "The delivery is not MLflow's (`invalid-signature`): a signature header is missing,"
        " the signature does not match the body and the configured secret (or no secret is"
        " configured), or it was signed more than 5 minutes ago."
    ),
    "headers": {
        "WWW-Authenticate": {
            "description": "`MLflow-Signature`: sign the delivery instead of sending a key.",
            "schema": {"type": "string"},
        }
    },
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def _parsed(model: type[BaseModel], raw: bytes | dict[str, Any], *, at: tuple[str, ...]) -> Any:
    """The body (or a part of it) as `model`, or the app's 400/422 for it."""
    try:
        if isinstance(raw, bytes):
            return model.model_validate_json(raw)
        return model.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *at, *error["loc"])} for error in exc.errors()]
        ) from None


@router.post(
    "/webhook",
    summary="Receive an MLflow model registry webhook",
    description=(
        "MLflow 3 calls this when a model registry event it has a webhook for happens. It takes"
        " no API key: the delivery is signed with the webhook's secret (the three"
        " `X-MLflow-*` headers), and one whose signature does not verify, or that was signed"
        " more than 5 minutes ago, is refused (401). A delivery id taken before is answered"
        " `replayed`, and nothing is done again. A system is linked to a registered model by"
        " its `external_ref`, `mlflow:models/<name>`. `model_version_alias.created` for an"
        " alias mapped to a stage (READINESS_MLFLOW_ALIAS_STAGES; `champion` to production and"
        " `challenger` to pilot by default) runs that stage's gate for each linked system,"
        " with the release `{version, uri: models:/<name>/<version>}`, and records a gate"
        " check. If every one passes, the systems before that stage move to it (a transition"
        " by the actor `mlflow`, a service identity with the pipeline role); otherwise nothing"
        " moves and `integration.mlflow.alias_denied` is appended for each system denied."
        " With READINESS_MLFLOW_TRACKING_URI set, the service then tags the version"
        " `readiness.gate=allowed` or `denied` and `readiness.gate_check_id` in MLflow,"
        " removes a denied alias and tags what blocked it (`readiness.blocking`); a"
        " failure to reach MLflow is logged and reported in `mlflow.errors`, and the answer"
        " is still 200. Other events, aliases mapped to no stage and models no system is"
        " linked to are answered `ignored`."
    ),
    response_model=MlflowWebhookResult,
    responses={
        400: {**errors(400)[400], "description": "The signed body is not JSON."},
        401: _UNAUTHORIZED,
        422: {
            **errors(422)[422],
            "description": "The signed body is not an MLflow delivery (no `entity`, `action`"
            " or `data`), or the `data` of an alias's creation lacks `name`, `alias` or"
            " `version`; each bad field is listed.",
        },
    },
    openapi_extra={
        **NO_SECURITY,
        "parameters": _HEADERS,
        WEBHOOK_SIGNATURE_EXTENSION: signature.SIGNATURE_HEADER,
        **own_json_body(
            MlflowWebhookDelivery,
            description="The delivery, as MLflow sends it; the signature covers its bytes.",
        ),
    },
)
async def receive_mlflow_webhook(request: Request) -> MlflowWebhookResult:
    settings: Settings = request.app.state.settings
    now = get_now(request)
    body = await request.body()
    secret = settings.readiness_mlflow_webhook_secret
    signed = signature.verify(
        secret=secret.get_secret_value() if secret is not None else None,
        delivery_id=request.headers.get(signature.DELIVERY_ID_HEADER),
        timestamp=request.headers.get(signature.TIMESTAMP_HEADER),
        signature=request.headers.get(signature.SIGNATURE_HEADER),
        body=body,
        now=now,
    )
    delivery: MlflowWebhookDelivery = _parsed(MlflowWebhookDelivery, body, at=())
    alias: AliasCreated | None = None
    if (delivery.entity, delivery.action) == service.ALIAS_CREATED:
        alias = _parsed(AliasCreated, delivery.data, at=("data",))
    stages = settings.mlflow_alias_stages()
    database: Database = request.app.state.database

    def unit_of_work() -> service.Received:
        with write_transaction(database) as session:
            received = service.receive(
                session,
                delivery_id=signed.delivery_id,
                entity=delivery.entity,
                action=delivery.action,
                alias=alias,
                stages=stages,
                now=now,
            )
            if alias is not None:
                service.remember(session, alias, received, now=now)
            return received

    received = await run_in_threadpool(unit_of_work)
    # Committed: only now is MLflow told, so nothing waits on it inside the transaction.
    actions = None
    tracking_uri = settings.readiness_mlflow_tracking_uri
    if received.verdict is not None and alias is not None and tracking_uri is not None:
        token = settings.readiness_mlflow_tracking_token
        actions = await client.report(
            tracking_uri=tracking_uri,
            token=token.get_secret_value() if token is not None else None,
            model=alias.name,
            alias=alias.alias,
            version=alias.version,
            verdict=received.verdict,
            gate_check_id=service.gate_check_ids(received),
            blocking=service.blocking_codes(received),
        )
    return MlflowWebhookResult(
        delivery_id=signed.delivery_id,
        outcome=received.outcome,
        detail=received.detail,
        model=alias.name if alias else None,
        version=alias.version if alias else None,
        alias=alias.alias if alias else None,
        target_stage=stages.get(alias.alias) if alias else None,
        systems=received.systems,
        mlflow=actions,
    )
