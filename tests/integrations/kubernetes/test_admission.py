"""The Kubernetes admission webhook, as the API server calls it: AdmissionReview v1 documents
of Deployments, StatefulSets and Pods, answered with the gate of the system their annotations
name, and recorded as gate checks (`gate.checked`) unless the review is a dry run."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import auth
from tests.factories import (
    make_system,
    meet_every_control,
    problem,
    readiness,
    transition,
)
from tests.integrations.kubernetes.reviews import (
    deployment,
    gate,
    pod,
    review,
    stateful_set,
)

PATH = "/v1/integrations/kubernetes/admission"
Headers = dict[str, str]


@pytest.fixture
def ready(client: TestClient, admin: Headers) -> str:
    """A minimal-tier system whose production gate passes, still in stage proposed."""
    make_system(client, admin, key="drafty", tier="minimal")
    meet_every_control(client, admin, key="drafty")
    assert readiness(client, admin, key="drafty")["gates"]["production"]["ready"] is True
    return "drafty"


@pytest.fixture
def not_ready(client: TestClient, admin: Headers) -> str:
    """A new high-tier system: both gates block."""
    make_system(client, admin, key="lender", tier="high")
    return "lender"


def admit(client: TestClient, headers: Headers, document: dict[str, Any]) -> dict[str, Any]:
    """The answer to a review, checked to be a valid AdmissionReview v1 answer for it."""
    response = client.post(PATH, json=document, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    answer: dict[str, Any] = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == document["request"]["uid"]
    return answer["response"]


def gate_checks(client: TestClient, headers: Headers, system: str | None = None) -> list[Any]:
    params = {"type": "gate.checked", "limit": 200, **({"system": system} if system else {})}
    page = client.get("/v1/events", params=params, headers=headers)
    assert page.status_code == 200, page.text
    events: list[Any] = page.json()["items"]
    return events


# Admitted and denied.


def test_a_ready_system_is_admitted_and_the_gate_check_recorded(
    client: TestClient, viewer: Headers, ready: str
) -> None:
    obj = deployment(annotations=gate(ready, "production", release="2.4.1"))
    answer = admit(client, viewer, review(obj))
    assert answer["allowed"] is True
    assert "status" not in answer
    # Admitted, not moved: the system is still in stage proposed, and the answer says so.
    assert answer["warnings"] == [
        "readiness: drafty is in stage proposed; record its move to production with a transition"
    ]

    (event,) = gate_checks(client, viewer, ready)
    assert event["system_key"] == ready
    assert event["actor"]["name"] == "viewer-key"  # the API server's key
    data = event["data"]
    assert data["target_stage"] == "production"
    assert data["allowed"] is True
    assert data["blocking"] == []
    assert data["release"] == {"version": "2.4.1", "uri": None}
    assert answer["auditAnnotations"] == {
        "system": ready,
        "stage": "production",
        "gate-check": str(data["gate_check_id"]),
        "allowed": "true",
    }


def test_a_system_already_in_the_stage_is_admitted_while_its_gate_passes(
    client: TestClient, admin: Headers, viewer: Headers, ready: str
) -> None:
    moved = transition(client, admin, key=ready, to="production")
    assert moved.status_code == 201, moved.text
    answer = admit(client, viewer, review(deployment(annotations=gate(ready))))
    assert answer["allowed"] is True
    assert "warnings" not in answer
    # Recorded as a gate check records it: production -> production is a release move,
    # judged by the production gate.
    (event,) = gate_checks(client, viewer, ready)
    assert event["data"]["from_stage"] == "production"
    assert (event["data"]["allowed"], event["data"]["move_valid"]) == (True, True)
    assert event["data"]["release_move"] is True
    assert event["data"]["blocking"] == []
    assert answer["auditAnnotations"]["allowed"] == "true"


def test_a_system_that_is_not_ready_is_denied_with_every_blocking_item(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    answer = admit(client, viewer, review(deployment(annotations=gate(not_ready))))
    assert answer["allowed"] is False
    status = answer["status"]
    assert status["code"] == 403
    assert status["reason"] == "Forbidden"
    message = status["message"]
    blocking = readiness(client, viewer, key=not_ready)["gates"]["production"]["blocking"]
    assert len(blocking) >= 4
    for item in blocking:
        named = f"{item['code']} {item['control']}" if item["control"] else item["code"]
        assert named in message, (named, message)

    (event,) = gate_checks(client, viewer, not_ready)
    assert event["data"]["allowed"] is False
    assert {(item["code"], item["control"]) for item in event["data"]["blocking"]} == {
        (item["code"], item["control"]) for item in blocking
    }
    assert f"gate check {event['data']['gate_check_id']}" in message
    assert answer["auditAnnotations"]["allowed"] == "false"


def test_the_stage_annotation_picks_the_gate(
    client: TestClient, admin: Headers, viewer: Headers
) -> None:
    # Full evidence: the pilot gate passes, the production gate waits for a pilot.
    make_system(client, admin, key="lender", tier="high")
    meet_every_control(client, admin, key="lender")
    pilot = admit(client, viewer, review(deployment(annotations=gate("lender", "pilot"))))
    production = admit(client, viewer, review(deployment(annotations=gate("lender"))))
    assert pilot["allowed"] is True
    assert production["allowed"] is False
    assert "pilot_required" in production["status"]["message"]
    targets = [event["data"]["target_stage"] for event in gate_checks(client, viewer, "lender")]
    assert targets == ["pilot", "production"]


def test_a_retired_system_is_denied_whatever_its_gate(
    client: TestClient, admin: Headers, viewer: Headers, ready: str
) -> None:
    assert transition(client, admin, key=ready, to="retired").status_code == 201
    answer = admit(client, viewer, review(deployment(annotations=gate(ready))))
    assert answer["allowed"] is False
    assert "the lifecycle does not allow retired -> production" in answer["status"]["message"]


# Where the annotations are read.


def test_a_pod_is_gated_by_its_own_annotations(
    client: TestClient, viewer: Headers, ready: str, not_ready: str
) -> None:
    assert admit(client, viewer, review(pod(annotations=gate(ready))))["allowed"] is True
    denied = admit(client, viewer, review(pod(annotations=gate(not_ready))))
    assert denied["allowed"] is False
    assert len(gate_checks(client, viewer)) == 2


def test_a_stateful_set_is_gated_by_its_pod_templates_annotations_when_its_own_name_none(
    client: TestClient, viewer: Headers, ready: str, not_ready: str
) -> None:
    by_template = stateful_set(template_annotations=gate(not_ready, release="7"))
    answer = admit(client, viewer, review(by_template))
    assert answer["allowed"] is False
    (event,) = gate_checks(client, viewer, not_ready)
    assert event["data"]["release"] == {"version": "7", "uri": None}

    # The object's own annotations win over its template's, all three from one place: the
    # template's release is not mixed into the object's system.
    both = stateful_set(annotations=gate(ready), template_annotations=gate(not_ready, release="7"))
    assert admit(client, viewer, review(both))["allowed"] is True
    (event,) = gate_checks(client, viewer, ready)
    assert event["data"]["release"] is None


def test_an_object_without_the_annotation_is_admitted_with_a_warning(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    # Other annotations, and the stage without the system, name nothing to gate.
    for obj in (deployment(), deployment(annotations={"readiness/stage": "production"})):
        answer = admit(client, viewer, review(obj))
        assert answer["allowed"] is True
        assert answer["warnings"] == [
            "readiness: Deployment claims/claims-triage has no readiness/system annotation;"
            " nothing was checked"
        ]
        assert "auditAnnotations" not in answer
    assert gate_checks(client, viewer) == []


# What is refused before the gate.


def test_an_unknown_system_is_denied(client: TestClient, viewer: Headers) -> None:
    answer = admit(client, viewer, review(deployment(annotations=gate("no-such-system"))))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert "no system 'no-such-system' is registered" in answer["status"]["message"]
    assert gate_checks(client, viewer) == []


@pytest.mark.parametrize(
    ("annotations", "said"),
    [
        (gate("drafty", "staging"), "'staging' is not a stage with a gate; use one of: pilot,"),
        (gate("drafty", "proposed"), "'proposed' is not a stage with a gate"),
        (gate("Drafty_Bot"), "'Drafty_Bot' is not a system key"),
        (gate("drafty", release="r" * 201), "readiness/release must be at most 200"),
        (gate("drafty", release="2.4\x001"), "readiness/release must be at most 200"),
    ],
)
def test_annotations_that_are_not_valid_are_denied(
    client: TestClient, viewer: Headers, ready: str, annotations: dict[str, str], said: str
) -> None:
    answer = admit(client, viewer, review(deployment(annotations=annotations)))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    assert said in answer["status"]["message"]
    assert gate_checks(client, viewer) == []


# What is admitted without a check.


def test_a_dry_run_is_evaluated_but_not_recorded(
    client: TestClient, viewer: Headers, ready: str, not_ready: str
) -> None:
    denied = admit(client, viewer, review(deployment(annotations=gate(not_ready)), dry_run=True))
    assert denied["allowed"] is False
    assert "dry run, not recorded" in denied["status"]["message"]
    assert "score_below_threshold" in denied["status"]["message"]
    assert "gate-check" not in denied["auditAnnotations"]
    allowed = admit(client, viewer, review(deployment(annotations=gate(ready)), dry_run=True))
    assert allowed["allowed"] is True
    assert gate_checks(client, viewer) == []


def test_a_delete_is_admitted_without_a_check(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    obj = deployment(annotations=gate(not_ready))
    answer = admit(client, viewer, review(None, operation="DELETE", old=obj))
    assert answer == {"uid": answer["uid"], "allowed": True}
    assert gate_checks(client, viewer) == []


def test_an_update_that_changes_what_runs_is_gated_and_one_that_does_not_is_not(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    old = deployment(annotations=gate(not_ready))
    # Scaled, relabelled, and the Deployment controller's own revision annotation.
    scaled = deployment(annotations=gate(not_ready), replicas=5)
    scaled["metadata"]["labels"]["team"] = "claims"
    scaled["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    answer = admit(client, viewer, review(scaled, operation="UPDATE", old=old))
    assert answer == {"uid": answer["uid"], "allowed": True}
    assert gate_checks(client, viewer) == []

    new_image = deployment(annotations=gate(not_ready), image="registry.example.com/c:2.5.0")
    assert admit(client, viewer, review(new_image, operation="UPDATE", old=old))["allowed"] is False
    to_pilot = deployment(annotations=gate(not_ready, "pilot"))
    assert admit(client, viewer, review(to_pilot, operation="UPDATE", old=old))["allowed"] is False
    assert len(gate_checks(client, viewer)) == 2


def test_a_subresource_is_admitted_without_a_check(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    document = review(deployment(annotations=gate(not_ready)), operation="UPDATE")
    document["request"]["subResource"] = "scale"
    assert admit(client, viewer, document)["allowed"] is True
    assert gate_checks(client, viewer) == []


# The HTTP contract.


def test_a_real_review_nested_deeper_than_other_bodies_is_read(
    client: TestClient, viewer: Headers, ready: str
) -> None:
    # managedFields nest past the 16 levels other request bodies may; unknown fields abound.
    document = review(deployment(annotations=gate(ready)))
    document["request"]["somethingNewer"] = {"a": [1, 2]}
    assert _depth(document) > 16
    assert admit(client, viewer, document)["allowed"] is True


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def test_a_body_that_is_no_json_is_400_malformed_json(client: TestClient, viewer: Headers) -> None:
    for content in (b"not json", b'{"apiVersion": "admission.k8s.io/v1",'):
        response = client.post(
            PATH, content=content, headers={**viewer, "Content-Type": "application/json"}
        )
        problem(response, 400, "malformed-json")


def _without(document: dict[str, Any], *path: str) -> dict[str, Any]:
    target = document
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return document


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**review(pod()), "kind": "AdmissionReviewList"}, "kind"),
        ({**review(pod()), "apiVersion": "admission.k8s.io/v1beta1"}, "apiVersion"),
        (_without(review(pod()), "request", "uid"), "request.uid"),
        (_without(review(pod()), "request"), "request"),
        ({**review(pod()), "request": {**review(pod())["request"], "uid": ""}}, "request.uid"),
        (
            {**review(pod()), "request": {**review(pod())["request"], "operation": "x"}},
            "request.operation",
        ),
        (
            {**review(pod()), "request": {**review(pod())["request"], "dryRun": 0}},
            "request.dryRun",
        ),
        ([review(pod())], "body"),
        ("AdmissionReview", "body"),
    ],
    ids=[
        "wrong kind",
        "wrong version",
        "no uid",
        "no request",
        "empty uid",
        "bad op",
        "dry run not a boolean",
        "list",
        "string",
    ],
)
def test_a_body_that_is_no_admission_review_is_400(
    client: TestClient, viewer: Headers, body: Any, field: str
) -> None:
    response = client.post(PATH, json=body, headers=viewer)
    refused = problem(response, 400, "invalid-admission-review")
    assert refused["detail"].startswith("The body is not an AdmissionReview")
    assert field in {error["field"] for error in refused["errors"]}, refused["errors"]
    assert all(error["location"] == "body" for error in refused["errors"])
    assert gate_checks(client, viewer) == []


@pytest.mark.parametrize("depth", [20, 900, 1000, 5000, 100_000])
def test_a_deeply_nested_body_is_a_client_error(
    client: TestClient, viewer: Headers, depth: int
) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    for content in (nested, b'{"apiVersion": ' + nested + b"}"):
        response = client.post(
            PATH, content=content, headers={**viewer, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (depth, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] in (
            "/problems/malformed-json",
            "/problems/invalid-admission-review",
        )


def test_the_webhook_needs_a_key(client: TestClient) -> None:
    document = review(deployment(annotations=gate("drafty")))
    for headers in ({}, auth("rdy_not_a_key")):
        response = client.post(PATH, json=document, headers=headers)
        refused = problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert refused["detail"]


def test_the_answer_is_the_same_json_kubernetes_reads(
    client: TestClient, viewer: Headers, not_ready: str
) -> None:
    # Only Kubernetes' own fields, none of them null (its decoder takes absent for unset).
    document = review(deployment(annotations=gate(not_ready)), uid="c0ffee00-0000-4000-8000-1")
    response = client.post(PATH, json=document, headers=viewer)
    answer = response.json()
    assert set(answer) == {"apiVersion", "kind", "response"}
    assert set(answer["response"]) == {"uid", "allowed", "status", "auditAnnotations"}
    assert set(answer["response"]["status"]) == {"code", "reason", "message"}
    assert "null" not in response.text
