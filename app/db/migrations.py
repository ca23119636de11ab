"""The schema version this code ships with: the head of its Alembic migrations."""

from functools import cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@cache  # the migrations a process ships with do not change while it runs
def migration_head() -> str:
    # Alembic (with Mako and Pygments behind it) is imported on the first readiness probe,
    # not at start-up: the liveness probe answers before it is loaded.
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
