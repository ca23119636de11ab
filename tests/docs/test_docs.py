"""The documentation stays true to the code where a test can tell: every setting is in the
configuration table, every operation in the API table with its lowest role, every problem
type in the list of errors, and no link leads out of the repository or to a missing file."""

import json
import re
from pathlib import Path

import pytest

from app.auth.oidc import IdentityProviderUnavailable
from app.config import Settings
from app.errors import DomainError
from app.evidence.service import ControlNotFound
from app.integrations.kubernetes.service import InvalidAdmissionReview
from app.integrations.mlflow.signature import InvalidSignature
from app.lifecycle.service import ControlNotWaivable
from app.pilots.service import PilotConcluded, SystemNotInPilot
from tests.conftest import project_path

DOCS = [project_path("README.md"), *sorted(project_path("docs").rglob("*.md"))]
# Set by the image or read by uvicorn, not by app/config.py.
PROCESS_VARIABLES = ("PROMETHEUS_MULTIPROC_DIR", "WEB_CONCURRENCY")


def _text(name: str) -> str:
    return project_path("docs", name).read_text()


def _table_rows(text: str, heading: str) -> list[str]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


def test_every_setting_is_in_the_configuration_table() -> None:
    documented = {
        match.group(1)
        for row in _table_rows(_text("operations.md"), "## Configuration")
        if (match := re.match(r"\| `([A-Z_]+)` \|", row))
    }
    settings = {name.upper() for name in Settings.model_fields}
    assert documented == settings | set(PROCESS_VARIABLES)


def test_every_operation_is_in_the_api_table() -> None:
    document = json.loads(project_path("openapi", "openapi.json").read_text())
    expected = {
        (method.upper(), path, operation.get("x-required-role", "none"))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    listed = set()
    for row in _table_rows(_text("api.md"), "## Operations")[2:]:  # after the header rows
        _tag, method, path, role, *_ = (cell.strip() for cell in row.strip(" |").split("|"))
        listed.add((method, path.strip("`"), role))
    assert listed == expected


def _problem_types(kind: type[DomainError]) -> set[str]:
    found = {kind.type}
    for sub in kind.__subclasses__():
        found |= _problem_types(sub)
    return found


# Problem types defined outside app.errors: imported, so they are among the subclasses.
ELSEWHERE = (
    IdentityProviderUnavailable,
    ControlNotFound,
    ControlNotWaivable,
    InvalidAdmissionReview,
    InvalidSignature,
    PilotConcluded,
    SystemNotInPilot,
)


def test_every_problem_type_is_listed() -> None:
    listed = set(re.findall(r"^\| \d{3} \| `([a-z-]+)` \|", _text("api.md"), re.M))
    found = _problem_types(DomainError)
    assert {kind.type for kind in ELSEWHERE} <= found
    assert found <= listed


@pytest.mark.parametrize("page", DOCS, ids=lambda page: page.name)
def test_links_stay_inside_the_repository(page: Path) -> None:
    root = project_path()
    for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(root), f"{page.name} links out of the repository: {target}"
        assert path.exists(), f"{page.name} links to a missing file: {target}"
