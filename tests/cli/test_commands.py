"""`readiness status`, `evidence put` and `pilot result`: exit 0 when done, 4 when the
service refuses the credentials (401) or the role (403), 5 for another 4xx."""

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import CliRunner, Service

pytestmark = pytest.mark.slow


def test_status_summarises_readiness(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli("status", "drafter", role="viewer")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("drafter: stage proposed, risk tier minimal, score ")
    assert "pilot gate: ready" in lines
    assert any(line.startswith("production gate: blocked by ") for line in lines)

    as_json = cli("status", "drafter", "--format", "json", role="viewer")
    assert as_json.code == 0
    answer = as_json.json()
    assert answer == service.get("/v1/systems/drafter/readiness")


def test_evidence_put_records_a_version(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli(
        "evidence",
        "put",
        "drafter",
        "data_rules",
        "--status",
        "met",
        "--summary",
        "Data rules signed off",
        "--uri",
        "https://wiki.example.com/data-rules",
        "--expires-at",
        "2027-01-31T00:00:00Z",
    )
    assert run.code == 0, run.stderr
    assert run.stdout == "Recorded drafter data_rules: met (version 1)\n"
    again = cli(
        "evidence", "put", "drafter", "data_rules", "--status", "partial", "--format", "json"
    )
    assert again.code == 0, again.stderr
    assert (again.json()["version"], again.json()["status"]) == (2, "partial")
    history = service.get("/v1/systems/drafter/evidence/data_rules/history")["items"]
    assert [(item["version"], item["status"]) for item in history] == [
        (2, "partial"),
        (1, "met"),
    ]
    assert history[1]["summary"] == "Data rules signed off"
    assert history[1]["uri"] == "https://wiki.example.com/data-rules"
    assert history[1]["expires_at"].startswith("2027-01-31T00:00:00")


def test_a_bad_token_exits_4(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli("gate", "drafter", "--stage", "pilot", role="rdy_not_a_key_of_this_service")
    assert run.code == 4
    assert run.stderr.startswith("readiness: HTTP 401 unauthorized:")
    assert service.events("drafter", "gate.checked") == []


def test_a_viewer_may_not_record_evidence(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli("evidence", "put", "drafter", "data_rules", "--status", "met", role="viewer")
    assert run.code == 4
    assert run.stderr.startswith("readiness: HTTP 403 forbidden:")
    assert len(run.stderr.splitlines()) == 1
    assert service.get("/v1/systems/drafter/evidence")["items"] == []


def test_another_4xx_exits_5(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    unknown = cli("evidence", "put", "drafter", "nonsense", "--status", "met")
    assert unknown.code == 5
    assert unknown.stderr.startswith("readiness: HTTP 404 control-not-found:")
    # not_applicable without a summary: the service's 422, with the field it names.
    invalid = cli("evidence", "put", "drafter", "data_rules", "--status", "not_applicable")
    assert invalid.code == 5
    assert invalid.stderr.startswith("readiness: HTTP 422 validation-error:")
    assert len(invalid.stderr.splitlines()) == 1


def _pilot(service: Service) -> int:
    service.make_system("drafter")
    service.move("drafter", "pilot")
    with service.http("pipeline") as http:
        response = http.post(
            "/v1/systems/drafter/pilots",
            json={
                "name": "Two sprints",
                "criteria": [
                    {"metric": "edit_distance_ratio", "op": "<=", "target": 0.3, "key": True},
                    {"metric": "minutes_saved", "op": ">=", "target": 20},
                ],
            },
        )
    assert response.status_code == 201, response.text
    pilot_id: int = response.json()["id"]
    return pilot_id


def _write(tmp_path: Path, metrics: Any) -> str:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    return str(path)


def test_pilot_result_posts_the_metrics_file(
    service: Service, cli: CliRunner, tmp_path: Path
) -> None:
    pilot_id = _pilot(service)
    metrics = {"edit_distance_ratio": 0.22, "minutes_saved": 26, "tokens_per_note": 900}
    run = cli(
        "pilot",
        "result",
        str(pilot_id),
        "--metrics-file",
        _write(tmp_path, metrics),
        "--run-id",
        "118",
        "--pipeline",
        "release-notes-eval",
        "--sample-size",
        "12",
        "--finding",
        "missing_training",
    )
    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"Recorded result 1 of pilot {pilot_id}: pilot score 100,")
    assert "metrics no criterion uses: tokens_per_note" in run.stdout
    pilot = service.get(f"/v1/pilots/{pilot_id}")
    values = {criterion["metric"]: criterion["value"] for criterion in pilot["criteria"]}
    assert values == {"edit_distance_ratio": 0.22, "minutes_saved": 26}
    assert [finding["finding"] for finding in pilot["findings"]] == ["missing_training"]
    (event,) = service.events("drafter", "pilot.result_recorded")
    assert event["data"]["metrics"] == metrics


def test_pilot_result_reads_standard_input_and_prints_json(
    service: Service, cli: CliRunner
) -> None:
    pilot_id = _pilot(service)
    run = cli(
        "pilot",
        "result",
        str(pilot_id),
        "--metrics-file",
        "-",
        "--run-id",
        "119",
        "--format",
        "json",
        stdin='{"edit_distance_ratio": 0.5, "minutes_saved": 30}',
    )
    assert run.code == 0, run.stderr
    answer = run.json()
    assert answer["result"]["source"] == {"run_id": "119"}
    assert answer["result"]["metrics"] == {"edit_distance_ratio": 0.5, "minutes_saved": 30}
    assert answer["evaluation"]["outcome"] == "fail"  # a key criterion failed


def test_pilot_result_for_an_unknown_pilot_exits_5(
    service: Service, cli: CliRunner, tmp_path: Path
) -> None:
    run = cli("pilot", "result", "999", "--metrics-file", _write(tmp_path, {"x": 1}))
    assert run.code == 5
    assert run.stderr.startswith("readiness: HTTP 404 not-found:")
