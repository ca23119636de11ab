"""Writes the OpenAPI document the app serves: `python -m app.openapi_export PATH`."""

import json
import sys
from pathlib import Path

from app.main import create_app
from app.config import Settings


def render() -> str:
    app = create_app(Settings(database_url="sqlite://"))
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render())
