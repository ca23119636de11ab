"""The route-by-identity matrix, generated from the OpenAPI document so every operation,
including future ones, is checked for every kind of caller: API keys and OIDC tokens, each
of every role, platform-wide or scoped to the system's owner team or to another team.

Each operation declares the lowest role it allows (`x-required-role`) and whether it writes
to one system (`x-team-scoped`). A caller below the role gets 403 forbidden; a caller scoped
to another team gets 403 out-of-scope on a team-scoped operation; every other caller gets
past both checks (whatever the state then makes of the request). The requests carry the
operation's own example body, so they reach the checks that run after validation."""

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from app.auth.dependencies import REQUIRED_ROLE_EXTENSION, TEAM_SCOPED_EXTENSION
from app.auth.roles import Role
from app.main import create_app
from tests.auth.oidc_issuer import AUDIENCE, Issuer, bearer
from tests.conftest import FakeClock, auth
from tests.factories import make_system, transition

# A request or more per operation and field: hundreds in all.
pytestmark = pytest.mark.slow

DOCUMENT = create_app().openapi()
SCHEMAS = DOCUMENT["components"]["schemas"]
OPERATIONS = [
    (method.upper(), path, operation)
    for path, items in DOCUMENT["paths"].items()
    for method, operation in items.items()
    if REQUIRED_ROLE_EXTENSION in operation
]
OWN, OTHER = "claims-platform", "payments"
SYSTEM = "claims-triage"  # the key the examples use


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    teams: tuple[str, ...] | None

    def scoped_elsewhere(self) -> bool:
        return self.teams is not None and OWN not in self.teams


CALLERS = [
    Caller(f"{kind} {role.value}{f' of {team}' if team else ''}", role, (team,) if team else None)
    for kind in ("key", "oidc")
    for role in Role
    for team in (None, OWN, OTHER)
    if not (team and role == Role.admin)
]


@pytest.fixture
def issuer(httpserver: HTTPServer) -> Issuer:
    issuer = Issuer(httpserver, "/matrix").serve()
    issuer.add_key("k1")
    return issuer


@pytest.fixture
def app_settings(issuer: Issuer) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for role in Role:
        rules.append({"claims": {"sub": f"{role.value}@all"}, "role": role.value})
        if role != Role.admin:
            rules.append(
                {
                    "claims": {"sub": f"{role.value}@team"},
                    "role": role.value,
                    "teams_claim": "teams",
                }
            )
    provider = {"issuer": issuer.url, "audience": AUDIENCE, "rules": rules}
    return {"readiness_oidc_config": json.dumps([provider])}


def _headers(
    client: TestClient, admin: dict[str, str], issuer: Issuer, clock: FakeClock, caller: Caller
) -> dict[str, str]:
    if caller.name.startswith("oidc"):
        scope = "team" if caller.teams else "all"
        claims: dict[str, Any] = {"sub": f"{caller.role.value}@{scope}"}
        if caller.teams:
            claims["teams"] = list(caller.teams)
        return bearer(issuer.token(clock.now, **claims))
    body: dict[str, Any] = {"name": caller.name, "role": caller.role.value}
    if caller.teams:
        body["teams"] = list(caller.teams)
    created = client.post("/v1/api-keys", json=body, headers=admin)
    assert created.status_code == 201, created.text
    return auth(created.json()["key"])


def _world(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    """A system of the owner team in stage pilot, with a pilot and a waiver, and a webhook
    with a delivery: what the operations' paths name."""
    webhook = client.post(
        "/v1/webhooks", json={"url": "https://93.184.216.34/hooks/matrix"}, headers=admin
    )
    assert webhook.status_code == 201, webhook.text
    make_system(client, admin, key=SYSTEM, tier="limited")
    moved = transition(
        client,
        admin,
        key=SYSTEM,
        to="pilot",
        override={"justification": "a pilot for the identity matrix"},
    )
    assert moved.status_code == 201, moved.text
    pilot = client.post(
        f"/v1/systems/{SYSTEM}/pilots",
        json={"name": "p", "criteria": [{"metric": "recall", "op": ">=", "target": 0.9}]},
        headers=admin,
    )
    waiver = client.post(
        f"/v1/systems/{SYSTEM}/waivers",
        json={"control": "training", "justification": "x", "expires_at": "2026-04-01T00:00:00Z"},
        headers=admin,
    )
    assert pilot.status_code == waiver.status_code == 201, (pilot.text, waiver.text)
    return {
        "key": SYSTEM,
        "pilot_id": str(pilot.json()["id"]),
        "waiver_id": str(waiver.json()["id"]),
        "control": "monitoring",
        "key_id": "999999",
        "version": "1",
        "webhook_id": str(webhook.json()["id"]),
        "delivery_id": str(_first_delivery(client, admin, webhook.json()["id"])),
    }


def _first_delivery(client: TestClient, admin: dict[str, str], webhook_id: int) -> int:
    items = client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=admin).json()["items"]
    first: int = items[-1]["id"]
    return first


def _example(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if content is None:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema["examples"][0]


def name(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=name)
def test_every_caller_gets_what_its_role_and_teams_allow(
    client: TestClient,
    admin: dict[str, str],
    issuer: Issuer,
    clock: FakeClock,
    method: str,
    path: str,
    operation: dict[str, Any],
) -> None:
    params = _world(client, admin)
    url = re.sub(r"\{(\w+)\}", lambda match: params[match.group(1)], path)
    needed = Role(operation[REQUIRED_ROLE_EXTENSION])
    team_scoped = operation.get(TEAM_SCOPED_EXTENSION, False)
    body = _example(operation)
    for caller in CALLERS:
        headers = _headers(client, admin, issuer, clock, caller)
        response = client.request(method, url, headers=headers, json=body)
        seen = (caller.name, method, path, response.status_code, response.text[:300])
        if not caller.role.allows(needed):
            assert response.status_code == 403, seen
            assert response.json()["type"] == "/problems/forbidden", seen
        elif team_scoped and caller.scoped_elsewhere():
            assert response.status_code == 403, seen
            assert response.json()["type"] == "/problems/out-of-scope", seen
        else:
            assert response.status_code not in (401, 403), seen


def test_every_write_to_a_system_or_pilot_is_team_scoped() -> None:
    """So a new write route cannot leave the scope out unnoticed: every write under a system
    or a pilot declares it, but for the three that are never scoped (gate checks ask;
    approvals and confirmations of the tier need outsiders)."""
    writes = {
        (method, path)
        for method, path, _ in OPERATIONS
        if method != "GET" and path.startswith(("/v1/systems", "/v1/pilots"))
    }
    unscoped = {
        ("POST", "/v1/systems/{key}/gate-checks"),
        ("POST", "/v1/systems/{key}/approvals"),
        ("POST", "/v1/systems/{key}/classification"),
    }
    scoped = {
        (method, path)
        for method, path, operation in OPERATIONS
        if operation.get(TEAM_SCOPED_EXTENSION)
    }
    assert scoped == writes - unscoped
