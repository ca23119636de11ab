"""Releases: every release of a system in a stage is judged by that stage's gate and recorded
as a transition within the stage; evidence of release-bound controls counts only for its
release (docs/domain.md, Releases)."""

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from app.controls.catalogue import EVIDENCE_CONTROLS
from tests.conftest import FakeClock
from tests.factories import (
    blocking_codes,
    confirm_tier,
    make_system,
    problem,
    readiness,
    record_evidence,
    transition,
)

Headers = dict[str, str]


def ready_limited(
    client: TestClient, admin: Headers, *, key: str = "drafter", tested: str | None = None
) -> None:
    """A limited-tier system every control of which is met, its testing evidence naming
    the release `tested` (None: naming none, so counting for every release). Its production
    gate needs testing_evidence (release-bound by default), no approvals and no pilot."""
    make_system(client, admin, key=key, tier="limited")
    for control in EVIDENCE_CONTROLS:
        named = {"release": tested} if control == "testing_evidence" and tested else {}
        record_evidence(client, admin, key=key, control=control, **named)
    confirm_tier(client, admin, key=key)


def gate_check(
    client: TestClient, headers: Headers, key: str, stage: str, release: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"target_stage": stage}
    if release is not None:
        body["release"] = {"version": release}
    response = client.post(f"/v1/systems/{key}/gate-checks", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def release_to(client: TestClient, headers: Headers, key: str, stage: str, version: str) -> Any:
    return transition(
        client,
        headers,
        key=key,
        to=stage,
        release={"version": version, "uri": f"models:/{key}/{version}"},
    )


def events_of(client: TestClient, headers: Headers, kind: str) -> list[dict[str, Any]]:
    response = client.get("/v1/events", params={"type": kind, "limit": 200}, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_every_later_release_of_a_production_system_is_gated_and_recorded(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)
    first = release_to(client, pipeline, "drafter", "production", "1.0.0")
    assert first.status_code == 201, first.text

    for version in ("1.0.1", "1.0.2"):
        check = gate_check(client, pipeline, "drafter", "production", version)
        assert (check["allowed"], check["move_valid"], check["release_move"]) == (True, True, True)
        moved = release_to(client, pipeline, "drafter", "production", version)
        assert moved.status_code == 201, moved.text
        record = moved.json()
        assert (record["from_stage"], record["to_stage"]) == ("production", "production")
        assert record["gate"] == "production"
        assert record["release"]["version"] == version

    system = client.get("/v1/systems/drafter", headers=pipeline).json()
    assert system["stage"] == "production"
    assert system["current_release"] == {"version": "1.0.2", "uri": "models:/drafter/1.0.2"}
    assert readiness(client, pipeline, key="drafter")["current_release"]["version"] == "1.0.2"


def test_recording_the_current_release_again_answers_the_same_transition_and_records_nothing(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)
    assert release_to(client, pipeline, "drafter", "production", "1.0.0").status_code == 201
    second = release_to(client, pipeline, "drafter", "production", "1.0.1")
    assert second.status_code == 201, second.text
    recorded = len(events_of(client, admin, "transition.recorded"))

    again = release_to(client, pipeline, "drafter", "production", "1.0.1")
    assert again.status_code == 200, again.text
    assert again.json() == second.json()
    assert again.headers["Location"] == second.headers["Location"]
    assert len(events_of(client, admin, "transition.recorded")) == recorded
    listed = client.get("/v1/systems/drafter/transitions", headers=pipeline).json()["items"]
    assert len(listed) == 2


def test_the_current_stage_without_a_release_is_answered_but_not_recorded(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)
    assert release_to(client, pipeline, "drafter", "production", "1.0.0").status_code == 201
    check = gate_check(client, pipeline, "drafter", "production")
    assert (check["allowed"], check["move_valid"], check["release_move"]) == (True, True, True)
    refused = problem(
        transition(client, pipeline, key="drafter", to="production"), 409, "invalid-transition"
    )
    assert refused["current_stage"] == "production"
    assert "release" in refused["detail"]


def test_a_release_into_a_stage_without_a_gate_is_no_move(
    client: TestClient, admin: Headers
) -> None:
    ready_limited(client, admin)
    assert release_to(client, admin, "drafter", "production", "1.0.0").status_code == 201
    assert transition(client, admin, key="drafter", to="suspended").status_code == 201
    problem(release_to(client, admin, "drafter", "suspended", "1.0.1"), 409, "invalid-transition")


def test_a_release_whose_gate_blocks_is_refused_and_the_current_release_stays(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)
    assert release_to(client, pipeline, "drafter", "production", "1.0.0").status_code == 201
    record_evidence(client, admin, key="drafter", control="data_rules", status="not_met")

    check = gate_check(client, pipeline, "drafter", "production", "1.0.1")
    assert (check["allowed"], check["move_valid"]) == (False, True)
    assert ("control_not_met", "data_rules") in {
        (item["code"], item["control"]) for item in check["blocking"]
    }
    problem(release_to(client, pipeline, "drafter", "production", "1.0.1"), 409, "gate-denied")
    system = client.get("/v1/systems/drafter", headers=pipeline).json()
    assert system["current_release"]["version"] == "1.0.0"


def test_releases_and_stage_at_agree_with_the_transitions(
    client: TestClient, admin: Headers, viewer: Headers, clock: FakeClock
) -> None:
    ready_limited(client, admin)
    moments: dict[str, Any] = {}

    def step(stage: str, version: str | None) -> int:
        clock.advance(hours=1)
        moved = (
            release_to(client, admin, "drafter", stage, version)
            if version
            else transition(client, admin, key="drafter", to=stage)
        )
        assert moved.status_code == 201, moved.text
        moments[f"{stage}:{version}"] = clock.now + timedelta(minutes=30)
        transition_id: int = moved.json()["id"]
        return transition_id

    ids = [
        step("pilot", "0.9"),
        step("production", "0.9"),
        step("production", "1.0"),
        step("production", "1.1"),
        step("suspended", None),
        step("production", "1.2"),
    ]
    response = client.get("/v1/systems/drafter/releases", headers=viewer)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(item["version"], item["stage"], item["transition_id"]) for item in items] == [
        ("1.2", "production", ids[5]),
        ("1.1", "production", ids[3]),
        ("1.0", "production", ids[2]),
        ("0.9", "production", ids[1]),
        ("0.9", "pilot", ids[0]),
    ]
    transitions = {
        row["id"]: row
        for row in client.get(
            "/v1/systems/drafter/transitions", headers=viewer, params={"limit": 200}
        ).json()["items"]
    }
    # Each period runs from its transition to the system's next one.
    left = [transitions[ids[i]]["occurred_at"] for i in (4, 3, 2, 1)]
    assert [item["left_at"] for item in items] == [None, *left]
    assert [item["entered_at"] for item in items] == [
        transitions[ids[i]]["occurred_at"] for i in (5, 3, 2, 1, 0)
    ]
    assert items[0]["uri"] == "models:/drafter/1.2"

    for (stage, version), expected in {
        ("pilot", "0.9"): "0.9",
        ("production", "1.0"): "1.0",
        ("production", "1.1"): "1.1",
        ("suspended", "None"): None,
        ("production", "1.2"): "1.2",
    }.items():
        at = moments[f"{stage}:{version}"].isoformat()
        answer = client.get("/v1/systems/drafter/stage", params={"at": at}, headers=viewer).json()
        assert answer["stage"] == stage
        assert (answer["release"] or {}).get("version") == expected

    # Paged, the same items in the same order.
    paged, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/systems/drafter/releases", params=params, headers=viewer).json()
        paged.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == items


def test_releases_of_an_unknown_system_is_404(client: TestClient, viewer: Headers) -> None:
    problem(client.get("/v1/systems/nobody/releases", headers=viewer), 404, "not-found")


# -- release-bound evidence ------------------------------------------------------------------


def test_a_release_whose_testing_evidence_names_only_earlier_releases_is_blocked_until_recorded(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin, tested="1.0")
    assert release_to(client, pipeline, "drafter", "production", "1.0").status_code == 201

    check = gate_check(client, pipeline, "drafter", "production", "1.1")
    assert check["allowed"] is False
    assert [(item["code"], item["control"]) for item in check["blocking"]] == [
        ("release_evidence_missing", "testing_evidence")
    ]
    problem(release_to(client, pipeline, "drafter", "production", "1.1"), 409, "gate-denied")
    for_release = client.get(
        "/v1/systems/drafter/readiness", params={"release": "1.1"}, headers=pipeline
    ).json()
    assert for_release["release"] == "1.1"
    (testing,) = [c for c in for_release["controls"] if c["control"] == "testing_evidence"]
    assert (testing["status"], testing["points"]) == ("missing", 0.0)
    assert ("release_evidence_missing", "testing_evidence") in blocking_codes(
        for_release, "production"
    )
    # Without a release the answer is judged as before: the latest evidence counts.
    plain = readiness(client, pipeline, key="drafter")
    assert plain["release"] is None
    assert plain["gates"]["production"]["ready"] is True

    recorded = record_evidence(
        client, pipeline, key="drafter", control="testing_evidence", release="1.1"
    )
    assert recorded["release"] == "1.1"
    assert gate_check(client, pipeline, "drafter", "production", "1.1")["allowed"] is True
    assert release_to(client, pipeline, "drafter", "production", "1.1").status_code == 201
    # The earlier release is judged on its own evidence still, an earlier version.
    assert gate_check(client, pipeline, "drafter", "production", "1.0")["allowed"] is True


def test_evidence_naming_no_release_counts_for_every_release(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)  # testing_evidence names no release
    assert release_to(client, pipeline, "drafter", "production", "1.0").status_code == 201
    assert gate_check(client, pipeline, "drafter", "production", "7.3")["allowed"] is True
    # A version naming another release does not hide the earlier one naming none.
    record_evidence(client, pipeline, key="drafter", control="testing_evidence", release="2.0")
    assert gate_check(client, pipeline, "drafter", "production", "7.3")["allowed"] is True


def test_a_control_the_policy_does_not_bind_counts_whatever_release_it_names(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin, tested="1.0")
    record_evidence(client, pipeline, key="drafter", control="monitoring", release="1.0")
    check = gate_check(client, pipeline, "drafter", "production", "1.1")
    assert {item["control"] for item in check["blocking"]} == {"testing_evidence"}

    # A policy binding no control: every release counts every version as before v1.2.
    policy = client.get("/v1/policies/active", headers=admin).json()
    assert policy["release_bound"] == ["testing_evidence"]
    document = {
        name: value
        for name, value in policy.items()
        if name not in {"version", "active", "created_at", "activated_at", "created_by"}
    }
    published = client.post(
        "/v1/policies",
        json={**document, "release_bound": [], "activate": True},
        headers=admin,
    )
    assert published.status_code == 201, published.text
    assert gate_check(client, pipeline, "drafter", "production", "1.1")["allowed"] is True


def test_a_policy_cannot_bind_a_system_field_to_releases(
    client: TestClient, admin: Headers
) -> None:
    policy = client.get("/v1/policies/active", headers=admin).json()
    document = {
        name: value
        for name, value in policy.items()
        if name not in {"version", "active", "created_at", "activated_at", "created_by"}
    }
    refused = client.post(
        "/v1/policies", json={**document, "release_bound": ["purpose"]}, headers=admin
    )
    problem(refused, 422, "validation-error")


def test_a_pilot_names_its_release_and_its_conclusion_evidence_carries_it(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin)
    assert release_to(client, pipeline, "drafter", "pilot", "0.9").status_code == 201
    created = client.post(
        "/v1/systems/drafter/pilots",
        json={
            "name": "Support desk, 2 weeks",
            "release": "0.9",
            "criteria": [{"metric": "accuracy", "op": ">=", "target": 0.8}],
        },
        headers=pipeline,
    )
    assert created.status_code == 201, created.text
    pilot = created.json()
    assert pilot["release"] == "0.9"
    posted = client.post(
        f"/v1/pilots/{pilot['id']}/results", json={"metrics": {"accuracy": 0.9}}, headers=pipeline
    )
    assert posted.status_code == 201, posted.text
    concluded = client.post(f"/v1/pilots/{pilot['id']}/conclude", headers=pipeline)
    assert concluded.status_code == 200, concluded.text
    evidence = client.get("/v1/systems/drafter/evidence", headers=pipeline).json()["items"]
    from_pilot = [item for item in evidence if item["source"] == f"pilot:{pilot['id']}"]
    assert from_pilot
    assert {item["release"] for item in from_pilot} == {"0.9"}


def test_readiness_for_a_release_is_never_stored(
    client: TestClient, admin: Headers, pipeline: Headers
) -> None:
    ready_limited(client, admin, tested="1.0")
    before = client.get("/v1/systems/drafter/readiness/history", headers=pipeline).json()
    for_release = client.get(
        "/v1/systems/drafter/readiness", params={"release": "2.0"}, headers=pipeline
    )
    assert for_release.status_code == 200, for_release.text
    assert for_release.json()["gates"]["production"]["ready"] is False
    assert readiness(client, pipeline, key="drafter")["gates"]["production"]["ready"] is True
    after = client.get("/v1/systems/drafter/readiness/history", headers=pipeline).json()
    assert after == before
