"""The command line tool is a distribution of its own (cli/): it installs into a fresh
virtual environment with only httpx, typer and rich, so a deploy runner gets none of the
service's database and web dependencies, and its code imports nothing of the service's."""

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.cli.conftest import registry_reachable
from tests.conftest import project_path

CLI_DIR = project_path("cli")


def test_the_tool_imports_nothing_of_the_service() -> None:
    imported: set[str] = set()
    for source in (CLI_DIR / "src" / "readiness_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    assert "app" not in imported
    assert {"httpx", "typer", "rich", "readiness_cli"} <= imported


def run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Away from the checkout, whose directory would put the service's `app` on sys.path.
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=cwd,
    )


@pytest.mark.slow
def test_the_tool_installs_on_its_own(tmp_path: Path) -> None:
    if not registry_reachable():
        pytest.skip("no package registry to install the dependencies from")
    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        CLI_DIR,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    env = {name: value for name, value in os.environ.items() if not name.startswith("READINESS_")}
    shown = run(venv / "bin" / "readiness", "--version", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    version = tomllib.loads((CLI_DIR / "pyproject.toml").read_text())["project"]["version"]
    assert shown.stdout == f"readiness {version}\n"

    # Only the tool's own dependencies: none of the service's.
    for module in ("sqlalchemy", "fastapi", "sqlmodel", "app"):
        missing = run(python, "-c", f"import {module}", cwd=tmp_path, env=env)
        assert missing.returncode == 1, module
        assert "ModuleNotFoundError" in missing.stderr
