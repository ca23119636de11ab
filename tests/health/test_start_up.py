"""What a worker loads before it answers its first liveness probe: the libraries only the
readiness probe, the OIDC key fetch or the command line tools need are left for later, so a
new pod is live sooner."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import project_path

LOADED_LATER = ("alembic", "mako", "httpx", "rich", "pygments", "typer")


@pytest.mark.slow  # a fresh interpreter
def test_the_service_starts_without_the_libraries_it_needs_only_later(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "import app.main\n"
        f"print(json.dumps(sorted(name for name in {LOADED_LATER!r} if name in sys.modules)))"
    )
    finished = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=project_path(),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "", "DATABASE_URL": f"sqlite:///{tmp_path / 'start.db'}"},
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout.splitlines()[-1]) == []
