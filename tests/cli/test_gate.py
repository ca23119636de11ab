"""`readiness gate`: exit 0 when the gate allows the move (recording it with --record), 1 when
it denies it with every blocking item shown as a table, as JSON or as GitHub annotations and
a job summary, 5 for an unknown system or a move that lost a race."""

from pathlib import Path

import httpx
import pytest
from werkzeug import Request, Response

from readiness_cli.output import workflow_command
from tests.cli.conftest import CliRunner, Proxy, Service


@pytest.mark.slow
def test_an_allowed_gate_exits_0_and_records_nothing(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")  # minimal tier: the pilot gate passes at once
    run = cli("gate", "drafter", "--stage", "pilot", "--release", "1.0.0")
    assert run.code == 0, run.stderr
    assert run.stdout.startswith("ALLOWED: drafter may enter pilot (now proposed)")
    assert "release 1.0.0" in run.stdout
    assert service.get("/v1/systems/drafter")["stage"] == "proposed"
    checks = service.events("drafter", "gate.checked")
    assert len(checks) == 1


@pytest.mark.slow
def test_json_prints_the_gate_check(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli("gate", "drafter", "--stage", "pilot", "--format", "json")
    assert run.code == 0, run.stderr
    check = run.json()
    assert check["allowed"] is True
    assert check["blocking"] == []
    assert (check["system_key"], check["current_stage"], check["target_stage"]) == (
        "drafter",
        "proposed",
        "pilot",
    )


@pytest.mark.slow
def test_record_moves_the_system_from_the_stage_the_gate_saw(
    service: Service, cli: CliRunner, proxy: Proxy
) -> None:
    service.make_system("drafter")
    run = cli(
        "gate",
        "drafter",
        "--stage",
        "pilot",
        "--release",
        "1.0.0",
        "--record",
        "--reason",
        "deploy job 7",
        "--format",
        "json",
        url=proxy.url,
    )
    assert run.code == 0, run.stderr
    answer = run.json()
    assert answer["allowed"] is True
    assert answer["transition"]["to_stage"] == "pilot"
    moves = service.get("/v1/systems/drafter/transitions")["items"]
    assert [(m["from_stage"], m["to_stage"], m["reason"]) for m in moves] == [
        ("proposed", "pilot", "deploy job 7")
    ]
    assert moves[0]["release"]["version"] == "1.0.0"
    # The move named the stage the gate check reported, so a concurrent move would 409.
    posts = [(path, headers) for method, path, headers in proxy.seen if method == "POST"]
    assert [path for path, _ in posts] == [
        "/v1/systems/drafter/gate-checks",
        "/v1/systems/drafter/transitions",
    ]
    keys = [headers["Idempotency-Key"] for _, headers in posts]
    assert len(set(keys)) == 2, "each POST of the command has its own key"


@pytest.mark.slow
def test_record_text_says_what_was_recorded(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    run = cli("gate", "drafter", "--stage", "pilot", "--record")
    assert run.code == 0, run.stderr
    assert "RECORDED: drafter moved proposed -> pilot (transition" in run.stdout
    (move,) = service.get("/v1/systems/drafter/transitions")["items"]
    assert move["reason"] == "Gate to pilot passed (readiness gate --record)"


@pytest.mark.slow
def test_record_of_a_later_release_is_a_release_move(service: Service, cli: CliRunner) -> None:
    """The system in production, the next release entering production is judged by the
    production gate and recorded as a transition within the stage."""
    service.make_production_ready("drafter")
    first = cli("gate", "drafter", "--stage", "production", "--release", "1.0.0", "--record")
    assert first.code == 0, first.stderr
    assert "RECORDED: drafter moved proposed -> production (transition" in first.stdout

    run = cli("gate", "drafter", "--stage", "production", "--release", "1.0.1", "--record")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == (
        "ALLOWED: release 1.0.1 of drafter may enter production, the stage drafter is in"
    )
    latest = service.get("/v1/systems/drafter/transitions")["items"][0]
    assert (latest["from_stage"], latest["to_stage"], latest["release"]["version"]) == (
        "production",
        "production",
        "1.0.1",
    )
    assert lines[-1] == (
        f"RECORDED: release 1.0.1 of drafter entered production (transition {latest['id']})"
    )


@pytest.mark.slow
def test_re_recording_the_current_release_is_done_and_says_so(
    service: Service, cli: CliRunner, tmp_path: Path
) -> None:
    """A deploy job run again for the release already in the stage: the service records
    nothing anew (200 with the transition that recorded it) and the tool exits 0."""
    service.make_production_ready("drafter")
    args = ("gate", "drafter", "--stage", "production", "--release", "1.0.1", "--record")
    first = cli(*args, "--format", "json")
    assert first.code == 0, first.stderr
    assert first.json()["already_recorded"] is False
    recorded = first.json()["transition"]

    again = cli(*args)
    assert again.code == 0, again.stderr
    assert again.stdout.splitlines()[-1] == (
        f"release 1.0.1 was already recorded in production (transition {recorded['id']})"
    )

    as_json = cli(*args, "--format", "json")
    assert as_json.code == 0, as_json.stderr
    answer = as_json.json()
    assert answer["allowed"] is True
    assert answer["already_recorded"] is True
    assert answer["transition"] == recorded

    summary = tmp_path / "summary.md"
    for_github = cli(*args, "--format", "github", GITHUB_STEP_SUMMARY=str(summary))
    assert for_github.code == 0, for_github.stderr
    assert (
        "::notice title=Readiness gate%3A drafter to production::release 1.0.1 was already"
        f" recorded in production (transition {recorded['id']})"
    ) in for_github.stdout.splitlines()
    assert "::error" not in for_github.stdout
    assert (
        f"Recorded: release 1.0.1 was already recorded in production (transition"
        f" {recorded['id']})." in summary.read_text()
    )
    # Four runs, one transition.
    assert len(service.get("/v1/systems/drafter/transitions")["items"]) == 1


def _blocking(service: Service, key: str, gate: str) -> list[dict[str, str]]:
    items: list[dict[str, str]] = service.get(f"/v1/systems/{key}/readiness")["gates"][gate][
        "blocking"
    ]
    assert items, "the test needs a gate that blocks"
    return items


@pytest.mark.slow
def test_a_denied_gate_exits_1_with_a_table_of_every_blocking_item(
    service: Service, cli: CliRunner
) -> None:
    service.make_system("drafter")
    blocking = _blocking(service, "drafter", "production")
    run = cli("gate", "drafter", "--stage", "production", "--release", "2.0.0", "--record")
    assert run.code == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "DENIED: drafter may not enter production yet (now proposed)"
    assert f"Blocking items ({len(blocking)})" in run.stdout
    for item in blocking:
        row = next(line for line in lines if item["detail"] in line)
        assert item["code"] in row
        assert (item.get("control") or "-") in row
    # Denied: --record recorded nothing.
    assert service.get("/v1/systems/drafter/transitions")["items"] == []


@pytest.mark.slow
def test_a_denied_gate_as_json(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    blocking = _blocking(service, "drafter", "production")
    run = cli("gate", "drafter", "--stage", "production", "--format", "json")
    assert run.code == 1, run.stderr
    check = run.json()
    assert check["allowed"] is False
    assert check["move_valid"] is True
    assert check["blocking"] == blocking


@pytest.mark.slow
def test_a_denied_gate_for_github_annotates_and_writes_the_job_summary(
    service: Service, cli: CliRunner, tmp_path: Path
) -> None:
    service.make_system("drafter")
    blocking = _blocking(service, "drafter", "production")
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    run = cli(
        "gate",
        "drafter",
        "--stage",
        "production",
        "--format",
        "github",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert run.code == 1, run.stderr
    title = "Readiness gate%3A drafter to production"
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error")]
    assert errors == [
        f"::error title={title}::{item['code']}"
        + (f" {item['control']}" if item.get("control") else "")
        + f": {item['detail']}"
        for item in blocking
    ]
    assert run.stdout.startswith("DENIED: drafter may not enter production yet")
    text = summary.read_text()
    assert text.startswith("earlier step\n### Readiness gate: `drafter` to production: denied")
    assert "| code | control | detail |" in text
    for item in blocking:
        assert f"| {item['code']} | {item.get('control') or '-'} |" in text


@pytest.mark.slow
def test_an_invalid_move_is_denied(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    service.move("drafter", "retired")
    run = cli("gate", "drafter", "--stage", "pilot", "--format", "github")
    assert run.code == 1, run.stderr
    assert (
        "DENIED: drafter may not enter pilot: the lifecycle has no move retired -> pilot"
        in run.stdout
    )
    assert "::error title=Readiness gate%3A drafter to pilot::DENIED" in run.stdout


@pytest.mark.slow
def test_an_unknown_system_exits_5(service: Service, cli: CliRunner) -> None:
    run = cli("gate", "nobody", "--stage", "pilot")
    assert run.code == 5
    assert run.stdout == ""
    assert run.stderr.startswith("readiness: HTTP 404 not-found:")
    assert len(run.stderr.splitlines()) == 1

    as_json = cli("gate", "nobody", "--stage", "pilot", "--format", "json")
    assert as_json.code == 5
    assert as_json.json()["status"] == 404  # the service's problem document


@pytest.mark.slow
def test_record_racing_a_stage_change_exits_5(
    service: Service, cli: CliRunner, proxy: Proxy
) -> None:
    """Another pipeline moves the system between this command's gate check and its move:
    the move names the stage the gate saw (expected_stage), so it is refused with 409."""
    service.make_system("drafter")

    def move_in_between(request: Request, answer: httpx.Response | None) -> Response | None:
        if request.path.endswith("/gate-checks"):
            service.move("drafter", "pilot")
        return None

    proxy.hooks.append(move_in_between)
    run = cli("gate", "drafter", "--stage", "pilot", "--record", url=proxy.url)
    assert run.code == 5, run.stderr
    assert run.stdout == ""
    assert run.stderr.startswith("readiness: HTTP 409 stage-conflict:")
    moves = service.get("/v1/systems/drafter/transitions")["items"]
    assert [move["reason"] for move in moves] == ["by the test"]


def test_workflow_commands_cannot_be_smuggled_in() -> None:
    assert (
        workflow_command("error", "50% done\n::warning::x", "a: b, c")
        == "::error title=a%3A b%2C c::50%25 done%0A::warning::x"
    )
