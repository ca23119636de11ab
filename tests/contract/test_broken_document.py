"""The contract tools catch a broken document: a copy of openapi/openapi.json with one part
removed fails each tool that should catch it (the linters and the validator for a document
that is not valid OpenAPI, Optic for a breaking change against the released baseline), while
the intact copy passes them all with the same configs. Needs the Node tools `make contract`
installs; without them these tests fail, never skip."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import project_path

pytestmark = pytest.mark.contract

NODE_BIN = project_path("openapi", "node_modules", ".bin")
CONFIGS = (".spectral.yaml", "redocly.yaml", ".redocly.lint-ignore.yaml")
# As the Makefile runs them: offline, no telemetry, no update checks.
QUIET = {
    "REDOCLY_TELEMETRY": "off",
    "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
    "OPTIC_TELEMETRY_LEVEL": "off",
    "NO_UPDATE_NOTIFIER": "1",
}

Document = dict[str, Any]


def node_tool(name: str) -> Path:
    tool = NODE_BIN / name
    if not tool.exists():
        pytest.fail(f"{tool} is missing: run `make contract`, which installs the Node tools")
    return tool


def run(command: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **QUIET},
        capture_output=True,
        text=True,
        timeout=300,
    )


def spectral(workdir: Path) -> subprocess.CompletedProcess[str]:
    return run(
        [
            node_tool("spectral"),
            "lint",
            "openapi.json",
            "--ruleset",
            ".spectral.yaml",
            "--fail-severity",
            "warn",
        ],
        workdir,
    )


def redocly(workdir: Path) -> subprocess.CompletedProcess[str]:
    return run([node_tool("redocly"), "lint", "openapi.json", "--config", "redocly.yaml"], workdir)


def spec_validator(workdir: Path) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "openapi_spec_validator", "openapi.json"], workdir)


def optic(workdir: Path) -> subprocess.CompletedProcess[str]:
    baseline = project_path("openapi", "baseline.json")
    return run([node_tool("optic"), "diff", baseline, "openapi.json", "--check"], workdir)


Tool = Callable[[Path], subprocess.CompletedProcess[str]]
TOOLS: dict[str, Tool] = {
    "spectral": spectral,
    "redocly": redocly,
    "openapi-spec-validator": spec_validator,
    "optic": optic,  # refuses an invalid document too, besides breaking changes
}


def copy_with(tmp_path: Path, breakage: Callable[[Document], None] | None = None) -> Path:
    """openapi.json (changed by `breakage`) with the committed lint configs beside it, so the
    copy is linted exactly as the committed document is."""
    document = json.loads(project_path("openapi", "openapi.json").read_text())
    if breakage is not None:
        breakage(document)
    (tmp_path / "openapi.json").write_text(json.dumps(document, indent=2))
    for name in CONFIGS:
        shutil.copy(project_path("openapi", name), tmp_path / name)
    return tmp_path


def assert_fails(tool: str, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, f"{tool} accepted the broken copy:\n{result.stdout}"
    assert result.returncode != 127, f"{tool} did not run:\n{result.stderr}"


def test_the_intact_copy_passes_every_tool(tmp_path: Path) -> None:
    """Without this, a tool failing for any other reason would pass the tests below."""
    workdir = copy_with(tmp_path)
    for name, tool in TOOLS.items():
        result = tool(workdir)
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"


def drop_title(document: Document) -> None:
    del document["info"]["title"]


def drop_response_description(document: Document) -> None:
    del document["paths"]["/v1/systems"]["post"]["responses"]["201"]["description"]


def drop_path_parameter_required(document: Document) -> None:
    (parameter,) = document["paths"]["/v1/systems/{key}"]["get"]["parameters"]
    del parameter["required"]


def drop_responses(document: Document) -> None:
    del document["paths"]["/v1/systems/{key}"]["get"]["responses"]


@pytest.mark.parametrize(
    ("breakage", "catchers"),
    [
        pytest.param(drop_title, set(TOOLS), id="info.title removed"),
        pytest.param(drop_response_description, set(TOOLS), id="response description removed"),
        # Neither Redocly's `recommended` rules nor Optic look at a path parameter's `required`.
        pytest.param(
            drop_path_parameter_required,
            {"spectral", "openapi-spec-validator"},
            id="path parameter's required removed",
        ),
        # OpenAPI 3.1 made `responses` optional, so the validator rightly accepts this, and the
        # linters' rules only look at a `responses` that is there. Optic still requires it, and
        # for a client the operation's answers are gone: a breaking change.
        pytest.param(drop_responses, {"optic"}, id="operation responses removed"),
    ],
)
def test_an_invalid_document_is_caught(
    tmp_path: Path, breakage: Callable[[Document], None], catchers: set[str]
) -> None:
    workdir = copy_with(tmp_path, breakage)
    for name in sorted(catchers):
        assert_fails(name, TOOLS[name](workdir))


def drop_path(document: Document) -> None:
    del document["paths"]["/v1/systems/{key}/readiness"]


def drop_required_response_field(document: Document) -> None:
    schema = document["components"]["schemas"]["ReadinessRead"]
    schema["required"].remove("score")
    del schema["properties"]["score"]


def require_new_request_field(document: Document) -> None:
    schema = document["components"]["schemas"]["SystemCreate"]
    schema["properties"]["cost_centre"] = {"type": "string"}
    schema["required"].append("cost_centre")


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(drop_path, id="path removed"),
        pytest.param(drop_required_response_field, id="required response field removed"),
        pytest.param(require_new_request_field, id="new required request field"),
    ],
)
def test_a_breaking_change_is_caught_by_optic(
    tmp_path: Path, breakage: Callable[[Document], None]
) -> None:
    workdir = copy_with(tmp_path, breakage)
    result = optic(workdir)
    assert_fails("optic", result)
    assert "breaking change" in result.stdout, result.stdout
