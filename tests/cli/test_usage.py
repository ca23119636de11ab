"""Bad input exits 2 with one line saying why, before anything is sent (the tool points at a
port where nothing listens: a run that sent a request would exit 3), never a traceback."""

import json
import tomllib
from pathlib import Path

import pytest

from readiness_cli.main import EvidenceStatus, GateStage
from tests.cli.conftest import CliRunner, Run
from tests.conftest import project_path


def _usage(run: Run, reason: str) -> None:
    assert run.code == 2, (run.code, run.stderr)
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert reason in run.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "readiness: Missing command."),
        (["launch"], "No such command 'launch'"),
        (["gate", "s", "--stage", "pilot", "--bogus"], "No such option: --bogus"),
        (["gate", "s"], "Missing option '--stage'"),
        (["gate", "s", "--stage", "prod"], "'prod' is not one of 'pilot', 'production'"),
        (["gate", "s", "--stage", "pilot", "--format", "xml"], "'xml' is not one of"),
        (["gate", "s", "--stage", "pilot", "--reason", "why"], "--reason needs --record"),
        (["gate", "s", "--stage", "pilot", "--release-uri", "u"], "--release-uri needs --release"),
        (["status"], "Missing argument 'SYSTEM'"),
        (["releases"], "Missing argument 'SYSTEM'"),
        (["releases", "s", "--limit", "0"], "Invalid value for '--limit'"),
        (["releases", "s", "--format", "github"], "'github' is not one of 'text', 'json'"),
        (["evidence", "put", "s", "c"], "Missing option '--status'"),
        (["evidence", "put", "s", "c", "--status", "great"], "'great' is not one of 'met'"),
        (
            ["evidence", "put", "s", "c", "--status", "met", "--expires-at", "soon"],
            "--expires-at must be an RFC 3339 time",
        ),
        (
            ["evidence", "put", "s", "c", "--status", "met", "--expires-at", "2027-01-01T00:00"],
            "--expires-at needs a time zone",
        ),
        (["pilot", "result", "one", "--metrics-file", "m.json"], "Invalid value for 'PILOT_ID'"),
        (["pilot", "result", "1"], "Missing option '--metrics-file'"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_command_lines_exit_2(offline: CliRunner, args: list[str], reason: str) -> None:
    _usage(offline(*args), reason)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"READINESS_URL": None}, "readiness: READINESS_URL is not set"),
        ({"READINESS_URL": " "}, "readiness: READINESS_URL is not set"),
        ({"READINESS_URL": "readiness.example.com"}, "READINESS_URL must be an http"),
        ({"READINESS_TOKEN": None}, "readiness: READINESS_TOKEN is not set"),
        ({"READINESS_TOKEN": "rdy_one two"}, "READINESS_TOKEN holds spaces or characters"),
        ({"READINESS_RETRIES": "lots"}, "READINESS_RETRIES must be a number, not 'lots'"),
        ({"READINESS_RETRIES": "1.5"}, "READINESS_RETRIES must be a whole number"),
        ({"READINESS_TIMEOUT": "-1"}, "READINESS_TIMEOUT must be a number of at least 0.1"),
    ],
)
def test_bad_settings_exit_2(offline: CliRunner, env: dict[str, str | None], reason: str) -> None:
    _usage(offline("status", "s", **env), reason)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "no such file"),
        ("{oops", "is not JSON: Expecting property name"),
        ("", "is not JSON"),
        ('{"precision": NaN}', "is not JSON: NaN is not a number JSON allows"),
        ("[0.9, 0.8]", "must hold a JSON object of metric names to numbers, not list"),
        ("0.93", "must hold a JSON object of metric names to numbers, not float"),
        ("null", "must hold a JSON object of metric names to numbers, not null"),
        ("{}", "holds no metrics"),
        ('{"precision": "0.93"}', "metric 'precision' is not a number: \"0.93\""),
        ('{"precision": true}', "metric 'precision' is not a number: true"),
        ('{"precision": null}', "metric 'precision' is not a number: null"),
        ('{"precision": {"value": 0.93}}', "metric 'precision' is not a number: {"),
    ],
)
def test_bad_metrics_files_exit_2(
    offline: CliRunner, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "metrics.json"
    if content is not None:
        path.write_text(content)
    run = offline("pilot", "result", "1", "--metrics-file", str(path))
    _usage(run, f"readiness: metrics file {path}")
    assert reason in run.stderr


@pytest.mark.slow
def test_metrics_on_standard_input_are_checked_too(offline: CliRunner) -> None:
    run = offline("pilot", "result", "1", "--metrics-file", "-", stdin='["x"]')
    _usage(run, "readiness: standard input must hold a JSON object")


@pytest.mark.slow
def test_version_prints_the_installed_version(offline: CliRunner) -> None:
    pyproject = tomllib.loads(project_path("cli", "pyproject.toml").read_text())
    run = offline("--version")
    assert (run.code, run.stderr) == (0, "")
    assert run.stdout == f"readiness {pyproject['project']['version']}\n"


@pytest.mark.slow
def test_help_exits_0(offline: CliRunner) -> None:
    run = offline("gate", "--help")
    assert run.code == 0
    assert "--record" in run.stdout


def test_the_choices_are_the_services() -> None:
    """The stages and statuses the tool accepts are the ones the contract declares."""
    schemas = json.loads(project_path("openapi", "openapi.json").read_text())["components"][
        "schemas"
    ]
    assert [stage.value for stage in GateStage] == schemas["GateStage"]["enum"]
    assert [status.value for status in EvidenceStatus] == schemas["EvidenceStatus"]["enum"]
