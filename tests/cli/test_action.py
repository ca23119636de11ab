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
from packaging.requirements import Requirement

from tests.cli.conftest import Run, Service, base_env, registry_reachable
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


def test_the_outputs_are_the_gate_steps() -> None:
    names = ["allowed", "score", "gate-check-id", "transition-id", "already-recorded"]
    outputs = _action()["outputs"]
    assert list(outputs) == names
    for name in names:
        assert outputs[name]["value"] == f"${{{{ steps.gate.outputs.{name} }}}}"


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


def read_outputs(path: Path) -> dict[str, str]:
    """The step outputs written to $GITHUB_OUTPUT (`name=value` lines; the last one wins)."""
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def run_gate_step(
    inputs: dict[str, str], tmp_path: Path, summary: Path, outputs: Path | None = None
) -> Run:
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
            "GITHUB_OUTPUT": str(outputs or tmp_path / "outputs"),
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
    check = service.get("/v1/events", system="drafter", type="gate.checked")["items"][0]
    assert read_outputs(tmp_path / "outputs") == {
        "allowed": "false",
        "score": str(check["data"]["score"]).removesuffix(".0"),
        "gate-check-id": str(check["data"]["gate_check_id"]),
        "transition-id": "",
        "already-recorded": "false",
    }


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
    written = read_outputs(tmp_path / "outputs")
    assert (written["allowed"], written["transition-id"]) == ("true", str(move["id"]))
    assert written["gate-check-id"].isdigit()


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


def _readme_step() -> dict[str, Any]:
    """The README's deploy example: the Action's step as a workflow would use it."""
    readme = project_path("README.md").read_text()
    (block,) = [
        block
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.S)
        if "integrations/github-action@" in block
    ]
    (step,) = yaml.safe_load(block)
    loaded: dict[str, Any] = step
    return loaded


@pytest.mark.slow
def test_the_readme_example_gates_every_release(service: Service, tmp_path: Path) -> None:
    """The README's step (stage production, record true) on a first deploy, a second and a
    third release, and the third's job run again: each passes, the re-run recording nothing."""
    given = _readme_step()["with"]
    assert (given["stage"], given["record"]) == ("production", True)
    assert given["token"] == "${{ secrets.READINESS_TOKEN }}"
    assert given["release"] == "${{ github.sha }}"
    service.make_production_ready(given["system"])
    # What GitHub passes: every input as a string, the expressions evaluated.
    inputs = {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name, value in given.items()
    }
    inputs.update({"url": service.url, "token": service.tokens["pipeline"]})

    written: list[dict[str, str]] = []
    for number, release in enumerate(["1.0.0", "1.1.0", "1.2.0", "1.2.0"]):
        outputs = tmp_path / f"outputs-{number}"
        run = run_gate_step(
            {**inputs, "release": release}, tmp_path, tmp_path / "summary.md", outputs
        )
        assert run.code == 0, run.stdout + run.stderr
        written.append(read_outputs(outputs))
        if number == 3:
            assert "::notice" in run.stdout
            assert "release 1.2.0 was already recorded in production" in run.stdout
        else:
            assert "::" not in run.stdout, run.stdout
            assert "RECORDED:" in run.stdout

    moves = service.get(f"/v1/systems/{given['system']}/transitions")["items"]
    assert [(m["from_stage"], m["to_stage"], m["release"]["version"]) for m in moves] == [
        ("production", "production", "1.2.0"),
        ("production", "production", "1.1.0"),
        ("proposed", "production", "1.0.0"),
    ]
    assert [w["transition-id"] for w in written] == [
        str(moves[2]["id"]),
        str(moves[1]["id"]),
        str(moves[0]["id"]),
        str(moves[0]["id"]),
    ]
    assert [w["allowed"] for w in written] == ["true"] * 4
    assert [w["already-recorded"] for w in written] == ["false", "false", "false", "true"]
    assert len({w["gate-check-id"] for w in written}) == 4  # each run checked the gate
    releases = service.get(f"/v1/systems/{given['system']}/releases")["items"]
    assert [(r["version"], r["left_at"] is None) for r in releases] == [
        ("1.2.0", True),
        ("1.1.0", False),
        ("1.0.0", False),
    ]


# The command that wrote requirements.txt (its header says so too).
EXPORT = [
    "export",
    "--frozen",
    "--package",
    "readiness-cli",
    "--no-dev",
    "--group",
    "build",
    "--no-emit-project",
    "--format",
    "requirements-txt",
]
PINS = ACTION_DIR / "requirements.txt"


def test_the_actions_pins_are_the_lock_files() -> None:
    """requirements.txt holds what uv.lock pins for the tool and its build tool, with hashes;
    `make action-pins` writes it again after the lock changes."""
    uv = project_path(".uv", "bin", "uv")
    exported = subprocess.run(
        [str(uv), *EXPORT],
        cwd=project_path(),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    assert exported.returncode == 0, exported.stderr
    assert PINS.read_text() == exported.stdout, "run make action-pins"
    pinned = re.findall(r"^([a-z0-9-]+)==\S+ ", PINS.read_text(), re.M)
    assert {"httpx", "typer", "rich", "hatchling"} <= set(pinned)
    assert not {"sqlalchemy", "fastapi", "readiness", "readiness-cli"} & set(pinned)


@pytest.mark.slow
def test_the_install_step_installs_exactly_the_pins(tmp_path: Path) -> None:
    """The Action's install step, run as GitHub runs it, in a fresh virtual environment: the
    tool and the pinned packages, nothing else; a second run finds it installed."""
    if not registry_reachable():
        pytest.skip("no package registry to install the pins from")
    (step,) = [s for s in _action()["runs"]["steps"] if "install" in s["name"].lower()]
    script = tmp_path / "install-step.sh"
    script.write_text(step["run"])
    env = base_env(tmp_path)
    env.update(
        {
            "READINESS_PYTHON": sys.executable,
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_ACTION_PATH": str(ACTION_DIR),
            "GITHUB_PATH": str(tmp_path / "path"),
        }
    )
    for _ in range(2):
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    venv = tmp_path / "readiness-cli"
    assert (tmp_path / "path").read_text().splitlines() == [str(venv / "bin")] * 2

    version = subprocess.run(
        [str(venv / "bin" / "readiness"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert version.stdout.startswith("readiness "), version.stderr
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "freeze"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    ).stdout
    installed = {
        name.lower().replace("_", "-"): found
        for name, found in (line.split("==", 1) for line in frozen.splitlines())
    }
    assert installed.pop("readiness-cli") == version.stdout.split()[1]
    for seeded in ("pip", "setuptools"):  # what `python -m venv` puts in every environment
        installed.pop(seeded, None)
    assert installed == _pins_for_this_machine()


def _pins_for_this_machine() -> dict[str, str]:
    """requirements.txt's pins whose environment markers hold here (colorama is Windows')."""
    pins = {}
    for line in re.findall(r"^[a-z0-9-]+==.*?(?= \\$)", PINS.read_text(), re.M):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            pins[requirement.name] = str(requirement.specifier).removeprefix("==")
    return pins
