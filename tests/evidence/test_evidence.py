import threading
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from tests.conftest import FakeClock
from tests.factories import make_system, record_evidence


def test_put_records_a_current_version(
    client: TestClient, pipeline: dict[str, str], clock: FakeClock
) -> None:
    make_system(client, pipeline, key="sys-e")
    first = record_evidence(
        client,
        pipeline,
        key="sys-e",
        control="data_rules",
        status="partial",
        summary="draft",
        uri="https://wiki/x",
    )
    assert (first["version"], first["status"], first["current"], first["stale"]) == (
        1,
        "partial",
        True,
        False,
    )
    clock.advance(minutes=1)
    second = record_evidence(client, pipeline, key="sys-e", control="data_rules", status="met")
    assert second["version"] == 2

    current = client.get("/v1/systems/sys-e/evidence", headers=pipeline).json()
    assert [(item["control"], item["version"], item["status"]) for item in current["items"]] == [
        ("data_rules", 2, "met")
    ]

    history = client.get("/v1/systems/sys-e/evidence/data_rules/history", headers=pipeline).json()
    assert [(item["version"], item["current"]) for item in history["items"]] == [
        (2, True),
        (1, False),
    ]


def test_history_paginates_newest_first(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-h")
    for status in ("not_met", "partial", "met"):
        record_evidence(client, pipeline, key="sys-h", control="monitoring", status=status)
    page = client.get(
        "/v1/systems/sys-h/evidence/monitoring/history", params={"limit": 2}, headers=pipeline
    ).json()
    assert [item["status"] for item in page["items"]] == ["met", "partial"]
    rest = client.get(
        "/v1/systems/sys-h/evidence/monitoring/history",
        params={"limit": 2, "cursor": page["next_cursor"]},
        headers=pipeline,
    ).json()
    assert [item["status"] for item in rest["items"]] == ["not_met"]
    assert rest["next_cursor"] is None


def test_unknown_control_is_404(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-u")
    response = client.put(
        "/v1/systems/sys-u/evidence/vibes", json={"status": "met"}, headers=pipeline
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/control-not-found")
    history = client.get("/v1/systems/sys-u/evidence/vibes/history", headers=pipeline)
    assert history.status_code == 404


def test_system_field_controls_are_not_evidence(
    client: TestClient, pipeline: dict[str, str]
) -> None:
    make_system(client, pipeline, key="sys-f")
    response = client.put(
        "/v1/systems/sys-f/evidence/purpose", json={"status": "met"}, headers=pipeline
    )
    assert response.status_code == 422


def test_unknown_system_is_404(client: TestClient, pipeline: dict[str, str]) -> None:
    response = client.put(
        "/v1/systems/ghost-sys/evidence/monitoring", json={"status": "met"}, headers=pipeline
    )
    assert response.status_code == 404


def test_not_applicable_needs_a_summary(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-n")
    for body in ({"status": "not_applicable"}, {"status": "not_applicable", "summary": "  "}):
        response = client.put("/v1/systems/sys-n/evidence/training", json=body, headers=pipeline)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
    ok = record_evidence(
        client,
        pipeline,
        key="sys-n",
        control="training",
        status="not_applicable",
        summary="no human users",
    )
    assert ok["status"] == "not_applicable"


def test_bad_bodies_are_422(client: TestClient, pipeline: dict[str, str]) -> None:
    make_system(client, pipeline, key="sys-b")
    for body in (
        {"status": "done"},
        {},
        {"status": "met", "expires_at": "2027-01-01T00:00:00"},  # no zone
        {"status": "met", "expires_at": "tomorrow"},
        {"status": "met", "extra": 1},
    ):
        response = client.put("/v1/systems/sys-b/evidence/training", json=body, headers=pipeline)
        assert response.status_code == 422, body


def test_past_expiry_is_accepted_and_stale(
    client: TestClient, pipeline: dict[str, str], clock: FakeClock
) -> None:
    make_system(client, pipeline, key="sys-x")
    past = (clock.now - timedelta(days=1)).isoformat()
    recorded = record_evidence(client, pipeline, key="sys-x", control="monitoring", expires_at=past)
    assert recorded["stale"] is True
    controls = client.get("/v1/systems/sys-x/readiness", headers=pipeline).json()["controls"]
    assert next(c for c in controls if c["control"] == "monitoring")["status"] == "stale"


def test_writes_need_pipeline_and_reads_viewer(
    client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    make_system(client, keys["pipeline"], key="sys-r")
    response = client.put(
        "/v1/systems/sys-r/evidence/training", json={"status": "met"}, headers=keys["viewer"]
    )
    assert response.status_code == 403
    assert client.get("/v1/systems/sys-r/evidence", headers=keys["viewer"]).status_code == 200


def test_sixteen_concurrent_writers_lose_nothing(live_server: str, admin: dict[str, str]) -> None:
    with httpx.Client(base_url=live_server, headers=admin, timeout=60) as http:
        created = http.post(
            "/v1/systems",
            json={
                "key": "busy-sys",
                "name": "Busy",
                "impact_areas": ["money"],
                "oversight": "human_reviews_all",
            },
        )
        assert created.status_code == 201, created.text

    writers = 16
    barrier = threading.Barrier(writers)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        with httpx.Client(base_url=live_server, headers=admin, timeout=60) as http:
            barrier.wait()
            response = http.put(
                "/v1/systems/busy-sys/evidence/monitoring",
                json={"status": "met", "summary": f"writer {index}"},
            )
            with lock:
                results.append(response)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert [response.status_code for response in results] == [200] * writers
    versions = sorted(response.json()["version"] for response in results)
    assert versions == list(range(1, writers + 1))

    with httpx.Client(base_url=live_server, headers=admin, timeout=60) as http:
        history = http.get(
            "/v1/systems/busy-sys/evidence/monitoring/history", params={"limit": 50}
        ).json()["items"]
        current = http.get("/v1/systems/busy-sys/evidence").json()["items"]
    assert len(history) == writers
    assert [item["current"] for item in history] == [True] + [False] * (writers - 1)
    # The current version is the one committed last: the highest version number.
    last = max(results, key=lambda response: response.json()["version"]).json()
    assert [(item["version"], item["summary"]) for item in current] == [(writers, last["summary"])]
