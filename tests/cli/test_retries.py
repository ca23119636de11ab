"""Connection errors, 429 and 503 are retried a bounded number of times with backoff (honouring
Retry-After); every POST carries one Idempotency-Key on all its tries, so a retried POST is
replayed by the service, never recorded twice. Still failing after the retries: exit 3."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from readiness_cli.http import Client, RetryPolicy, Unreachable, retry_after_seconds
from tests.cli.conftest import CliRunner, Proxy, Service


@pytest.mark.slow
def test_nothing_listening_exits_3(offline: CliRunner) -> None:
    run = offline("status", "drafter", READINESS_RETRIES="2")
    assert run.code == 3
    assert run.stdout == ""
    assert "did not answer GET /v1/systems/drafter/readiness after 3 attempt(s)" in run.stderr
    assert "ConnectError" in run.stderr
    assert len(run.stderr.splitlines()) == 1


def _always(httpserver: HTTPServer, status: int, **headers: str) -> None:
    httpserver.expect_request("/v1/systems/drafter/gate-checks").respond_with_response(
        Response(
            json.dumps({"type": "/problems/service-unavailable", "status": status}),
            status=status,
            headers=headers,
            content_type="application/problem+json",
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize("status", [503, 429])
def test_a_service_that_keeps_refusing_exits_3_after_the_retries(
    httpserver: HTTPServer, offline: CliRunner, status: int
) -> None:
    _always(httpserver, status, **{"Retry-After": "0"})
    run = offline(
        "gate",
        "drafter",
        "--stage",
        "pilot",
        READINESS_URL=httpserver.url_for("/").rstrip("/"),
        READINESS_RETRIES="3",
    )
    assert run.code == 3, run.stderr
    assert f"after 4 attempt(s): HTTP {status}" in run.stderr
    requests = [request for request, _ in httpserver.log]
    assert len(requests) == 4
    keys = {request.headers["Idempotency-Key"] for request in requests}
    assert len(keys) == 1, "every try of one POST carries the same key"
    assert all(request.headers["Authorization"].startswith("Bearer ") for request in requests)


@pytest.mark.slow
def test_another_5xx_is_not_retried(httpserver: HTTPServer, offline: CliRunner) -> None:
    _always(httpserver, 500)
    run = offline(
        "gate",
        "drafter",
        "--stage",
        "pilot",
        READINESS_URL=httpserver.url_for("/").rstrip("/"),
        READINESS_RETRIES="3",
    )
    assert run.code == 3
    assert run.stderr.startswith("readiness: HTTP 500 service-unavailable")
    assert len(httpserver.log) == 1


@pytest.mark.slow
def test_retry_after_is_honoured(httpserver: HTTPServer, offline: CliRunner) -> None:
    answers = iter(
        [
            Response("", status=429, headers={"Retry-After": "1"}),
            Response(json.dumps({"system_key": "drafter"}), content_type="application/json"),
        ]
    )
    httpserver.expect_request("/v1/systems/drafter/readiness").respond_with_handler(
        lambda _request: next(answers)
    )
    started = time.monotonic()
    run = offline(
        "status",
        "drafter",
        "--format",
        "json",
        READINESS_URL=httpserver.url_for("/").rstrip("/"),
        READINESS_RETRIES="3",
        READINESS_RETRY_WAIT="0",
    )
    assert run.code == 0, run.stderr
    assert run.json() == {"system_key": "drafter"}
    assert time.monotonic() - started >= 1.0
    assert len(httpserver.log) == 2


def _lose_first_answer(proxy: Proxy, suffix: str) -> None:
    """The first POST to a path ending in `suffix` reaches the service, which does the work,
    but its answer is replaced by a 503 on the way back (as a gateway might do)."""
    lost: list[str] = []

    def hook(request: Request, answer: httpx.Response | None) -> Response | None:
        if request.method == "POST" and request.path.endswith(suffix) and not lost:
            lost.append(request.headers["Idempotency-Key"])
            return Response("", status=503, headers={"Retry-After": "0"})
        return None

    proxy.hooks.append(hook)


@pytest.mark.slow
def test_a_retried_pilot_result_is_recorded_once(
    service: Service, cli: CliRunner, proxy: Proxy, tmp_path: Path
) -> None:
    service.make_system("drafter")
    service.move("drafter", "pilot")
    with service.http("pipeline") as http:
        created = http.post(
            "/v1/systems/drafter/pilots",
            json={"name": "p", "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}]},
        )
    pilot_id = created.json()["id"]
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"precision": 0.93}')
    _lose_first_answer(proxy, "/results")

    run = cli("pilot", "result", str(pilot_id), "--metrics-file", str(metrics), url=proxy.url)
    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"Recorded result 1 of pilot {pilot_id}")
    posts = [headers for method, _, headers in proxy.seen if method == "POST"]
    assert len(posts) == 2
    assert posts[0]["Idempotency-Key"] == posts[1]["Idempotency-Key"]
    assert len(service.events("drafter", "pilot.result_recorded")) == 1


@pytest.mark.slow
def test_a_retried_move_is_recorded_once(service: Service, cli: CliRunner, proxy: Proxy) -> None:
    service.make_system("drafter")
    _lose_first_answer(proxy, "/transitions")

    run = cli("gate", "drafter", "--stage", "pilot", "--record", url=proxy.url)
    assert run.code == 0, run.stderr
    assert "RECORDED: drafter moved proposed -> pilot" in run.stdout
    moves = [headers for method, path, headers in proxy.seen if path.endswith("/transitions")]
    assert len(moves) == 2
    assert moves[0]["Idempotency-Key"] == moves[1]["Idempotency-Key"]
    assert len(service.get("/v1/systems/drafter/transitions")["items"]) == 1
    assert len(service.events("drafter", "transition.recorded")) == 1


# The client itself, in process, for what a server cannot easily stage.


def _client(handler: httpx.MockTransport, retries: int = 2) -> Client:
    policy = RetryPolicy(retries=retries, base_wait=0)
    return Client("http://readiness.test", "token", policy=policy, transport=handler)


def test_a_put_whose_answer_was_lost_is_not_sent_again() -> None:
    sent: list[str] = []

    def lose(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        raise httpx.ReadError("connection reset", request=request)

    with _client(httpx.MockTransport(lose)) as client:
        with pytest.raises(Unreachable, match="whether it was recorded is unknown"):
            client.request("PUT", "/v1/systems/s/evidence/training", json={"status": "met"})
        assert sent == ["PUT"]
        with pytest.raises(Unreachable, match="after 3 attempt"):
            client.request("POST", "/v1/pilots/1/results", json={}, idempotency_key="k")
        assert sent == ["PUT", "POST", "POST", "POST"]


def test_a_post_in_progress_is_asked_again() -> None:
    answers = iter(
        [
            httpx.Response(409, json={"type": "/problems/idempotency-in-progress"}),
            httpx.Response(201, json={"id": 1}),
        ]
    )
    with _client(httpx.MockTransport(lambda _request: next(answers))) as client:
        response = client.request("POST", "/v1/pilots/1/results", json={}, idempotency_key="k")
    assert response.status_code == 201


def test_every_post_needs_a_key() -> None:
    transport = httpx.MockTransport(lambda _request: httpx.Response(200))
    with _client(transport) as client, pytest.raises(ValueError, match="Idempotency-Key"):
        client.request("POST", "/v1/systems/s/gate-checks", json={})


def test_waits_grow_and_are_capped() -> None:
    policy = RetryPolicy(retries=10, base_wait=1, max_wait=8)
    for attempt, ceiling in enumerate([1, 2, 4, 8, 8]):
        assert ceiling / 2 <= policy.wait(attempt, None) <= ceiling
    assert policy.wait(0, 3600) == 8  # Retry-After, but never past the cap
    assert policy.wait(3, 0) == 0


def test_retry_after_as_seconds_or_a_date() -> None:
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert retry_after_seconds("5") == 5
    assert retry_after_seconds("Mon, 02 Mar 2026 09:00:30 GMT", now) == 30
    assert retry_after_seconds("Mon, 02 Mar 2026 08:00:00 GMT", now) == 0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
