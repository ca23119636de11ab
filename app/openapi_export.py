"""Writes the OpenAPI document the app serves: `python -m app.openapi_export PATH`."""

import json
import sys
from pathlib import Path

from app.main import app


def render() -> str:
    return json.dumps(app.openapi(), indent=2) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(render())
