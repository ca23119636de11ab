"""The readiness mirror's first look, taken on a background thread at start-up.

A first look reads every system (about 25 s and 400 MB at 100,000 systems), far longer than a
Prometheus scrape may take: so no request ever takes it. Start-up starts the build and goes
on; until the mirror is published, reports and both metrics scrapes run their queries (the
same numbers, slower). A failed build (the database down, say) is logged and tried again
later, the database path answering meanwhile. Shutdown stops the build within a buffer of
rows and waits for the thread, before the engines are disposed.
"""

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from app.background import BackgroundThread
from app.db import Database, read_transaction
from app.reports.mirror import BuildStopped, Mirror, publish

logger = logging.getLogger("app")

# Seconds between failed builds: doubling from the first to the last, then staying there.
RETRY_FIRST = 5.0
RETRY_MAX = 300.0
STOP_TIMEOUT = 30.0


class MirrorWarmup(BackgroundThread):
    """Builds and publishes the mirror of `database` once, on a daemon thread."""

    def __init__(self, database: Database, clock: Callable[[], datetime]) -> None:
        # Shutdown waits for it this long; a build notices the stop within a buffer of rows.
        super().__init__("readiness-mirror-warmup", stop_timeout=STOP_TIMEOUT)
        self._database = database
        self._clock = clock
        self._built = threading.Event()

    @property
    def built(self) -> bool:
        """Whether reports and /metrics read the mirror now."""
        return self._built.is_set()

    def needed(self) -> bool:
        return not self._built.is_set()

    def wait(self, timeout: float) -> bool:
        """Whether the mirror was built within `timeout` seconds (for tests and tools)."""
        return self._built.wait(timeout)

    def run(self, stop: threading.Event) -> None:
        delay = RETRY_FIRST
        while not stop.is_set():
            try:
                self._build(stop)
                return
            except BuildStopped:
                return
            except Exception:
                logger.exception(
                    "readiness mirror warm-up failed; reports and /metrics use the database"
                    " queries; retrying in %.0f s",
                    delay,
                )
            if stop.wait(delay):
                return
            delay = min(delay * 2, RETRY_MAX)

    def _build(self, stop: threading.Event) -> None:
        started = time.monotonic()
        mirror = Mirror()
        with read_transaction(self._database) as session:
            mirror.build(session, now=self._clock(), stop=stop)
            publish(session, mirror)
        self._built.set()
        logger.info(
            "readiness mirror built: %d systems in %.1f s",
            len(mirror.entries),
            time.monotonic() - started,
        )
