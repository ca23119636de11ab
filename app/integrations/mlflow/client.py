"""Calls back to the MLflow tracking server's REST API (`/api/2.0/mlflow/...`), after the
delivery's transaction committed: a denied alias is removed and the version tagged. The
service does not depend on the `mlflow` package; these are plain HTTP calls. A failure is
logged and reported in the webhook's answer, never raised: the decision is recorded either
way, and MLflow does not retry an answer that arrived."""

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.integrations.mlflow.schemas import MlflowActions

if TYPE_CHECKING:
    # Imported when MLflow is called: httpx loads its command line (rich, pygments) with it,
    # which start-up does without (tests/health/test_start_up.py).
    import httpx

logger = logging.getLogger(__name__)

ALIAS_PATH = "/api/2.0/mlflow/registered-models/alias"
REGISTERED_MODEL_PATH = "/api/2.0/mlflow/registered-models/get"
SET_VERSION_TAG_PATH = "/api/2.0/mlflow/model-versions/set-tag"
DELETE_VERSION_TAG_PATH = "/api/2.0/mlflow/model-versions/delete-tag"
# What the service tells MLflow users on the version itself (docs/integrations/mlflow.md):
# the verdict, the gate check that made it (GET /v1/systems/{key}/gate-checks lists it), and
# for a denial what blocked it.
GATE_TAG = "readiness.gate"
GATE_CHECK_TAG = "readiness.gate_check_id"
BLOCKING_TAG = "readiness.blocking"
# How MLflow answers a GET of an alias that is not set (400 INVALID_PARAMETER_VALUE) or of a
# model that does not exist (404 RESOURCE_DOES_NOT_EXIST).
GONE = frozenset({400, 404})
# Seconds per call; MLflow waits 30 s for the webhook's answer by default, and this takes
# five calls at most.
TIMEOUT = 5.0


@dataclass
class _Calls:
    client: "httpx.AsyncClient"
    errors: list[str] = field(default_factory=list)

    async def send(self, method: str, path: str, **kwargs: Any) -> "httpx.Response | None":
        """The answer, or None (and the error noted and logged) when the call failed."""
        import httpx

        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self._failed(f"{method} {path}: {type(exc).__name__}: {exc}")
            return None
        if method == "GET" and response.status_code in GONE:
            return response  # the caller tells "gone" from a failure
        if response.is_error:
            self._failed(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        return response

    def _failed(self, error: str) -> None:
        logger.warning("MLflow call failed: %s", error)
        self.errors.append(error)


def _aliased_version(response: "httpx.Response") -> str | None:
    try:
        version = response.json().get("model_version", {}).get("version")
    except (ValueError, AttributeError):
        return None
    return str(version) if version is not None else None


async def report(
    *,
    tracking_uri: str,
    token: str | None,
    model: str,
    alias: str,
    version: str,
    verdict: str,
    gate_check_id: str | None = None,
    blocking: str = "",
) -> MlflowActions:
    """Tag the version with the verdict (`readiness.gate`: `allowed` or `denied`) and the
    gate check behind it (`readiness.gate_check_id`) and, when denied, remove the alias, but
    only while it still names this version (an alias moved on to another version since is
    that version's to keep), and tag what blocked it (`readiness.blocking`). An allowed
    version loses the `readiness.blocking` of an earlier denial: it no longer holds."""
    import httpx

    async with httpx.AsyncClient(
        base_url=tracking_uri, headers=_headers(token), timeout=TIMEOUT
    ) as client:
        calls = _Calls(client)
        removed = False
        if verdict == "denied":
            found = await calls.send("GET", ALIAS_PATH, params={"name": model, "alias": alias})
            if (
                found is not None
                and found.status_code == 200
                and _aliased_version(found) == version
            ):
                deleted = await calls.send(
                    "DELETE", ALIAS_PATH, json={"name": model, "alias": alias}
                )
                removed = deleted is not None
        tagged = await calls.send(
            "POST",
            SET_VERSION_TAG_PATH,
            json={"name": model, "version": version, "key": GATE_TAG, "value": verdict},
        )
        if gate_check_id is not None:
            await calls.send(
                "POST",
                SET_VERSION_TAG_PATH,
                json={
                    "name": model,
                    "version": version,
                    "key": GATE_CHECK_TAG,
                    "value": gate_check_id,
                },
            )
        if verdict == "denied":
            await calls.send(
                "POST",
                SET_VERSION_TAG_PATH,
                json={"name": model, "version": version, "key": BLOCKING_TAG, "value": blocking},
            )
        else:
            # MLflow answers 200 when the version has no such tag.
            await calls.send(
                "DELETE",
                DELETE_VERSION_TAG_PATH,
                json={"name": model, "version": version, "key": BLOCKING_TAG},
            )
    return MlflowActions(
        alias_removed=removed, tag=verdict if tagged is not None else None, errors=calls.errors
    )


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def aliases(*, tracking_uri: str, token: str | None, model: str) -> dict[str, str] | None:
    """The registered model's aliases in MLflow, {alias: version}: empty for a model MLflow
    does not have (deleted, or never registered), None when MLflow could not be asked (the
    failure logged)."""
    import httpx

    async with httpx.AsyncClient(
        base_url=tracking_uri, headers=_headers(token), timeout=TIMEOUT
    ) as client:
        calls = _Calls(client)
        found = await calls.send("GET", REGISTERED_MODEL_PATH, params={"name": model})
    if found is None:
        return None
    if found.status_code in GONE:
        return {}
    try:
        listed = found.json().get("registered_model", {}).get("aliases", [])
        return {str(one["alias"]): str(one["version"]) for one in listed}
    except (ValueError, AttributeError, KeyError, TypeError):
        calls._failed(f"GET {REGISTERED_MODEL_PATH}: not a registered model: {found.text[:200]}")
        return None
