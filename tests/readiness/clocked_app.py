"""The app as a server process runs it, with its clock read from a file, so a test can move
time in processes of its own: `uvicorn tests.readiness.clocked_app:create --factory`, with
READINESS_TEST_CLOCK_FILE naming a file that holds an ISO 8601 time, and
READINESS_TEST_EXPIRY_BATCH, if set, the systems the scheduler stores per transaction."""

import os
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from app.main import create_app
from app.readiness import expiry


class FileClock:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text().strip())

    def set(self, now: datetime) -> None:
        # Replaced whole, so a reader never sees half a time.
        scratch = self.path.with_suffix(".next")
        scratch.write_text(now.isoformat())
        scratch.replace(self.path)


def create() -> FastAPI:
    if batch := os.environ.get("READINESS_TEST_EXPIRY_BATCH"):
        expiry.BATCH = int(batch)
    return create_app(clock=FileClock(Path(os.environ["READINESS_TEST_CLOCK_FILE"])))
