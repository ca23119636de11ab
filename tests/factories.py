"""Factories per domain: keyword-only, through the API, so tests read like client code."""

from typing import Any

from fastapi.testclient import TestClient

from app.controls.catalogue import EVIDENCE_CONTROLS

TIER_AREAS = {
    "minimal": ["drafting"],
    "limited": ["customer_service"],
    "high": ["money"],
    "critical": ["care"],
}


def system_body(*, key: str = "claims-triage", tier: str = "high", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": key,
        "name": f"System {key}",
        "purpose": "Rank incoming claims for review.",
        "scope": "Suggests a priority; never decides.",
        "owner": {"team": "claims-platform", "contact": "claims@example.com"},
        "impact_areas": TIER_AREAS[tier],
        "oversight": "human_reviews_all",
    }
    body.update(fields)
    return body


def make_system(
    client: TestClient,
    headers: dict[str, str],
    *,
    key: str = "claims-triage",
    tier: str = "high",
    **fields: Any,
) -> dict[str, Any]:
    response = client.post(
        "/v1/systems", json=system_body(key=key, tier=tier, **fields), headers=headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def record_evidence(
    client: TestClient,
    headers: dict[str, str],
    *,
    key: str,
    control: str,
    status: str = "met",
    **fields: Any,
) -> dict[str, Any]:
    response = client.put(
        f"/v1/systems/{key}/evidence/{control}", json={"status": status, **fields}, headers=headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


# Controls the default policy lets only an approver attest (`attested_by`).
ATTESTED_CONTROLS = frozenset({"risk_review", "approval_path"})


def meet_every_control(
    client: TestClient,
    headers: dict[str, str],
    *,
    key: str,
    attester: dict[str, str] | None = None,
) -> None:
    """Every evidence control met: by `headers`, and the ones the policy lets only a higher
    role attest by `attester` (default: `headers` too, an approver or admin key), which also
    confirms the system's risk tier."""
    for control in EVIDENCE_CONTROLS:
        by = attester or headers if control in ATTESTED_CONTROLS else headers
        record_evidence(client, by, key=key, control=control)
    confirm_tier(client, attester or headers, key=key)


def confirm_tier(client: TestClient, headers: dict[str, str], *, key: str) -> dict[str, Any]:
    """A person (an approver or admin key) confirms the system's current risk tier."""
    tier = client.get(f"/v1/systems/{key}", headers=headers).json()["risk_tier"]
    response = client.post(
        f"/v1/systems/{key}/classification", json={"tier": tier}, headers=headers
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def readiness(client: TestClient, headers: dict[str, str], *, key: str) -> dict[str, Any]:
    response = client.get(f"/v1/systems/{key}/readiness", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def blocking_codes(answer: dict[str, Any], gate: str) -> set[tuple[str, str | None]]:
    return {(item["code"], item.get("control")) for item in answer["gates"][gate]["blocking"]}


def transition(
    client: TestClient, headers: dict[str, str], *, key: str, to: str, **fields: Any
) -> Any:
    body = {"to_stage": to, "reason": f"move to {to}", **fields}
    return client.post(f"/v1/systems/{key}/transitions", json=body, headers=headers)


def approve(
    client: TestClient, headers: dict[str, str], *, key: str, stage: str, decision: str = "approve"
) -> dict[str, Any]:
    response = client.post(
        f"/v1/systems/{key}/approvals",
        json={"target_stage": stage, "decision": decision},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    """The problem details of an error answer, checked for its status and type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{slug}"
    return body
