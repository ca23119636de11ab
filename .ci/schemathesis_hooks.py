"""Schemathesis hooks (loaded through `hooks` in schemathesis.toml). Each makes the fuzzer act
as a real client would where the contract depends on it; neither turns a check off.

1. A client sends a fresh Idempotency-Key per logical request. The fuzzer draws keys from a
   small space ("0", "00", ...) and so sends one key with many different bodies, which the
   contract answers with 422 `idempotency-key-reused`: correct, yet it reads as "valid data
   rejected". Every key the service would accept (1 to 200 characters) is made unique before
   it is sent; keys of a length it refuses are sent as drawn, so their 400 stays tested.
2. The run authenticates with one admin key (SCHEMATHESIS_ADMIN_KEY, id in
   SCHEMATHESIS_ADMIN_KEY_ID). `DELETE /v1/api-keys/{key_id}` with that id (1 is a boundary
   value the coverage phase always tries) would revoke it, and every later request would get
   401, testing nothing. That one id is swapped for one no key has (404); revoking other keys,
   including ones the stateful phase creates, is tested as drawn.
3. MLflow signs each webhook delivery (READINESS_MLFLOW_WEBHOOK_SECRET, which
   .ci/schemathesis gives the app), and the service reads nothing unsigned: drawn headers
   would only ever test the 401. A drawn delivery to `POST /v1/integrations/mlflow/webhook`
   that carries all three `X-MLflow-*` headers is sent as MLflow sends it: its body serialized
   once, a fresh delivery id and timestamp, and the signature over those bytes. One missing a
   header is sent as drawn, so its 401 stays tested.

And one check, `positive_data_acceptance_beyond_rules`, which schemathesis.toml runs in place
of the built-in `positive_data_acceptance` (see there for why).
"""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from typing import Any

import schemathesis
from schemathesis.core import NotSet
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

IDEMPOTENCY_HEADER = "idempotency-key"
MAX_KEY_LENGTH = 200  # app.idempotency.middleware.MAX_KEY_LENGTH
NO_SUCH_KEY_ID = 2**31 - 1  # app.pagination.MAX_ID: valid, and never reached here
MLFLOW_WEBHOOK = "/v1/integrations/mlflow/webhook"
MLFLOW_HEADERS = ("X-MLflow-Delivery-Id", "X-MLflow-Timestamp", "X-MLflow-Signature")


def _unique_idempotency_key(case: Any) -> None:
    headers = case.headers
    if not headers:
        return
    for name, value in list(headers.items()):
        if name.lower() != IDEMPOTENCY_HEADER or not isinstance(value, str):
            continue
        if 1 <= len(value) <= MAX_KEY_LENGTH:
            headers[name] = f"{value[: MAX_KEY_LENGTH - 33]}.{uuid.uuid4().hex}"


def _spare_own_key(case: Any) -> None:
    own = os.environ.get("SCHEMATHESIS_ADMIN_KEY_ID")
    if not own or case.method.upper() != "DELETE":
        return
    if case.operation.path != "/v1/api-keys/{key_id}":
        return
    if str(case.path_parameters.get("key_id")) == own:
        case.path_parameters["key_id"] = NO_SUCH_KEY_ID


def _sign_mlflow_delivery(case: Any, kwargs: dict[str, Any]) -> None:
    secret = os.environ.get("READINESS_MLFLOW_WEBHOOK_SECRET")
    if not secret or case.operation.path != MLFLOW_WEBHOOK or case.method.upper() != "POST":
        return
    names = {name.lower(): name for name in case.headers or {}}
    if not all(header.lower() in names for header in MLFLOW_HEADERS):
        return
    try:
        body = b"" if isinstance(case.body, NotSet) else json.dumps(case.body).encode()
    except (TypeError, ValueError):
        return
    delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time()))
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    values = (delivery_id, timestamp, f"v1,{signature.decode()}")
    for header, value in zip(MLFLOW_HEADERS, values, strict=True):
        case.headers[names[header.lower()]] = value
    # A body given to the call is sent as it is, instead of the drawn one serialized anew.
    kwargs["data"] = body


# Problem types that say the request was well formed but the state or the moment refuses it:
# a cursor this service did not issue (400), an If-Match that is not the current ETag (412).
STATE_PROBLEMS = {"/problems/invalid-cursor", "/problems/precondition-failed"}
# `errors[].code` of a 422 from a rule across fields, or against stored state (the policy, the
# stage) or the clock, which no JSON Schema can state: "value_error" from the models'
# validators, "invalid" from app.errors.Unprocessable and its subclasses. Every other code names
# a constraint the document states (type, length, pattern, enum, ...), so a schema-valid request
# refused with it is a document bug; so is a 422 that names no field.
RULE_CODES = {"value_error", "invalid"}


def _refused_by_rule(response: Any) -> bool:
    try:
        problem = response.json()
    except ValueError:
        return False
    if not isinstance(problem, dict):
        return False
    if problem.get("type") in STATE_PROBLEMS:
        return True
    errors = problem.get("errors")
    return (
        response.status_code == 422
        and isinstance(errors, list)
        and bool(errors)
        and all(isinstance(error, dict) and error.get("code") in RULE_CODES for error in errors)
    )


@schemathesis.check
def positive_data_acceptance_beyond_rules(ctx: Any, response: Any, case: Any) -> bool | None:
    """The built-in check (its settings are `checks.positive_data_acceptance` in
    schemathesis.toml), except for answers that name a rule the schema cannot state."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _refused_by_rule(response):
            return None
        raise


@schemathesis.hook
def before_call(_context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    _unique_idempotency_key(case)
    _spare_own_key(case)
    _sign_mlflow_delivery(case, kwargs)
