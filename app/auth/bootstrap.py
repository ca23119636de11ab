"""The bootstrap admin key (READINESS_BOOTSTRAP_ADMIN_KEY), made sure of on a thread of its own.

Start-up begins it and waits for its first try, so with a healthy database the key exists
before the first request. A database that is down or not migrated yet stops nothing: the
thread tries again until it succeeds, so the key works as soon as the database is reachable
and migrated, without a restart. Shutdown stops the thread before the engines are disposed.
"""

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from app.auth.service import ensure_bootstrap_key
from app.background import BackgroundThread
from app.db import Database, write_transaction
from app.outage import reason

logger = logging.getLogger("app")

# Seconds between tries: doubling from the first to the last, then staying there.
RETRY_FIRST = 0.5
RETRY_MAX = 5.0
# How long start-up waits for the first try: a connection that neither succeeds nor fails
# (a host that drops packets) must not hold start-up for long.
START_WAIT = 5.0


class BootstrapKey(BackgroundThread):
    def __init__(self, database: Database, secret: str, clock: Callable[[], datetime]) -> None:
        super().__init__("bootstrap-admin-key")
        self._database = database
        self._secret = secret
        self._clock = clock
        self._done = threading.Event()
        self._tried = threading.Event()

    def needed(self) -> bool:
        return not self._done.is_set()

    def wait(self, timeout: float) -> bool:
        """Whether the key is there (created, found, or found revoked) within `timeout` s."""
        return self._done.wait(timeout)

    def wait_first_try(self, timeout: float) -> bool:
        """Whether the first try ended, one way or the other, within `timeout` s."""
        return self._tried.wait(timeout)

    def run(self, stop: threading.Event) -> None:
        delay = RETRY_FIRST
        failed = False
        while not stop.is_set():
            try:
                self._ensure()
            except Exception as exc:
                self._tried.set()
                if not failed:
                    logger.warning(
                        "bootstrap admin key not created yet (%s): trying again until the"
                        " database is reachable and migrated",
                        reason(exc),
                    )
                failed = True
            else:
                self._done.set()
                self._tried.set()
                if failed:
                    logger.info("bootstrap admin key created now that the database takes it")
                return
            if stop.wait(delay):
                return
            delay = min(delay * 2, RETRY_MAX)

    def _ensure(self) -> None:
        try:
            with write_transaction(self._database) as session:
                ensure_bootstrap_key(session, secret=self._secret, now=self._clock())
        except IntegrityError:
            logger.info("bootstrap admin key created by another worker starting too")
