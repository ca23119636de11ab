"""integrations/github-action/action.yml: valid against the GitHub Actions metadata schema
(check-jsonschema's copy, offline), inputs reaching its scripts only through the environment,
and its gate step run as GitHub runs it, inputs substituted as GitHub would, against a live
server with the installed `readiness`."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.conftest import Run, Service, base_env
from tests.conftest import ADMIN_SECRET, project_path

ACTION_DIR = project_path("integrations", "github-action")
ACTION = ACTION_DIR / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _action() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(ACTION.read_text())
    return loaded


def _check_schema(schema: str, document: Path) -> None:
    """check-jsonschema with a schema it carries (no network)."""
    checked = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "check-jsonschema"), "--builtin-schema", schema, document],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.slow
def test_the_action_is_valid_action_metadata() -> None:
    _check_schema("vendor.github-actions", ACTION)


@pytest.mark.slow
def test_the_documented_workflow_is_a_valid_workflow(tmp_path: Path) -> None:
    page = project_path("docs", "integrations", "github-action.md").read_text()
    workflow = re.findall(r"```yaml\n(.*?)```", page, re.S)[0]
    assert "uses: acme/readiness/integrations/github-action@" in workflow
    path = tmp_path / "deploy.yml"
    path.write_text(workflow)
    _check_schema("vendor.github-workflows", path)


def test_inputs_reach_the_scripts_only_through_the_environment() -> None:
    action = _action()
    assert set(action["inputs"]) >= {"url", "token", "system", "stage", "release", "record"}
    assert action["inputs"]["stage"]["default"] == "production"
    assert action["inputs"]["record"]["default"] == "false"
    assert action["inputs"]["format"]["default"] == "github"
    steps = action["runs"]["steps"]
    assert action["runs"]["using"] == "composite"
    for step in steps:
        assert step["shell"] == "bash"
        # An expression spliced into a script would run whatever an input holds.
        assert "${{" not in step["run"], step["name"]
    uses_of_token = [
        (step["name"], name)
        for step in steps
        for name, value in step.get("env", {}).items()
        if "inputs.token" in value
    ]
    assert uses_of_token == [("Ask the readiness gate", "READINESS_TOKEN")]


def _gate_step(inputs: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The gate step's script and its `env:` with `${{ inputs.* }}` evaluated as GitHub
    would: the value given, else the input's default; a required input must be given."""
    action = _action()
    (step,) = [step for step in action["runs"]["steps"] if step.get("id") == "gate"]
    declared = action["inputs"]
    assert set(inputs) <= set(declared), "inputs the action does not declare"

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        assert expression.startswith("inputs."), f"not evaluated here: {expression}"
        name = expression.removeprefix("inputs.")
        if name in inputs:
            return inputs[name]
        assert not declared[name].get("required"), f"required input missing: {name}"
        return str(declared[name].get("default", ""))

    env = {name: EXPRESSION.sub(value, str(text)) for name, text in step["env"].items()}
    return step["run"], env


def run_gate_step(inputs: dict[str, str], tmp_path: Path, summary: Path) -> Run:
    script, step_env = _gate_step(inputs)
    path = tmp_path / "gate-step.sh"
    path.write_text(script)
    env = base_env(tmp_path)
    env.update(step_env)
    env.update(
        {
            # What the install step leaves on the PATH: here, the installed console script.
            "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "GITHUB_ACTION_PATH": str(ACTION_DIR),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_WORKFLOW": "deploy",
            "GITHUB_RUN_ID": "4711",
            "GITHUB_REPOSITORY": "acme/claims",
            "RUNNER_TEMP": str(tmp_path),
        }
    )
    # As GitHub runs a `shell: bash` step.
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in run.stderr
    for secret in (inputs.get("token", ""), ADMIN_SECRET):
        assert not secret or secret not in run.stdout + run.stderr
    return run


@pytest.fixture
def inputs(service: Service) -> dict[str, str]:
    service.make_system("drafter")
    return {"url": service.url, "token": service.tokens["pipeline"], "system": "drafter"}


@pytest.mark.slow
def test_the_gate_step_fails_a_denied_move(
    service: Service, inputs: dict[str, str], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    run = run_gate_step({**inputs, "release": "2.0.0"}, tmp_path, summary)  # production
    assert run.code == 1, run.stderr
    assert run.stdout.startswith("DENIED: drafter may not enter production yet")
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    blocking = service.get("/v1/systems/drafter/readiness")["gates"]["production"]["blocking"]
    assert len(errors) == len(blocking) > 0
    assert "### Readiness gate: `drafter` to production: denied" in summary.read_text()
    assert "release 2.0.0" in summary.read_text()


@pytest.mark.slow
def test_the_gate_step_records_an_allowed_move(
    service: Service, inputs: dict[str, str], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.md"
    step_inputs = {**inputs, "stage": "pilot", "release": "1.0.0", "record": "true"}
    run = run_gate_step(step_inputs, tmp_path, summary)
    assert run.code == 0, run.stderr
    assert "RECORDED: drafter moved proposed -> pilot" in run.stdout
    (move,) = service.get("/v1/systems/drafter/transitions")["items"]
    assert move["reason"] == "deploy run 4711 of acme/claims"
    assert move["release"]["version"] == "1.0.0"
    assert "allowed" in summary.read_text()


@pytest.mark.slow
def test_the_gate_step_refuses_a_bad_record_input(inputs: dict[str, str], tmp_path: Path) -> None:
    run = run_gate_step({**inputs, "record": "yes"}, tmp_path, tmp_path / "summary.md")
    assert run.code == 2
    assert "record must be true or false, not yes" in run.stdout


@pytest.mark.slow
def test_the_gate_step_passes_a_bad_stage_to_the_tool(
    inputs: dict[str, str], tmp_path: Path
) -> None:
    run = run_gate_step({**inputs, "stage": "prod"}, tmp_path, tmp_path / "summary.md")
    assert run.code == 2
    assert "'prod' is not one of 'pilot', 'production'" in run.stderr
