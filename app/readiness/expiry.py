"""Time-driven readiness events: a gate that time alone turned (evidence went stale, a waiver
or an approval lapsed) is stored anew and told in the event log, with nobody writing.

Every worker runs the scheduler (`ExpiryScheduler`), which every READINESS_EXPIRY_INTERVAL_S
seconds stores anew, a batch per transaction, the answers whose `readiness_valid_until` has
passed, and appends in the same transaction a `readiness.changed` per gate whose `ready`
turned and, for a system in production whose production gate closed, `system.drifted`. The
workers need no coordination of their own: a pass selects the systems in its write
transaction, where the answers another pass stored are no longer stale (on PostgreSQL locked
rows are skipped and re-checked; on SQLite writers take turns), so each change is stored, and
told, once.

The events are dated when the pass stores the answer (their `occurred_at` is the stored
answer's `evaluated_at`): within an interval of the moment the gate turned while the service
runs, or at its first pass when it comes back after being down.
"""

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from app.auth.roles import SCHEDULER
from app.background import BackgroundThread
from app.db import Database, read_transaction, write_transaction
from app.events import service as events
from app.events.service import EventType, NewEvent
from app.models import System
from app.outage import reason
from app.readiness import service as readiness_service
from app.readiness.scoring import GateResult
from app.readiness.service import TimeChange
from app.vocabulary import GateStage, Stage

logger = logging.getLogger("app")

# Systems stored per transaction: writers to the database wait for one batch at most.
BATCH = 200


def time_events(change: TimeChange, *, now: datetime) -> list[NewEvent]:
    """The events one system's time-driven change appends: a `readiness.changed` per gate
    that turned, then `system.drifted` if it is in production and its production gate
    closed."""
    new = []
    for flip in change.flips:
        blocking = _blocking(flip.now)
        new.append(
            NewEvent(
                type=EventType.readiness_changed,
                actor=SCHEDULER,
                occurred_at=now,
                data={"gate": flip.gate.value, "ready": flip.now.ready, "blocking": blocking},
                system_key=change.system_key,
            )
        )
        closed = flip.gate is GateStage.production and not flip.now.ready
        if closed and change.stage == Stage.production.value:
            new.append(
                NewEvent(
                    type=EventType.system_drifted,
                    actor=SCHEDULER,
                    occurred_at=now,
                    data={"gate": flip.gate.value, "blocking": blocking},
                    system_key=change.system_key,
                )
            )
    return new


def _blocking(gate: GateResult) -> list[dict[str, Any]]:
    # As the readiness answer renders a gate's blocking items.
    return [
        {"code": item.code.value, "control": item.control, "detail": item.detail}
        for item in gate.blocking
    ]


def store_expired(
    database: Database,
    *,
    clock: Callable[[], datetime],
    size: int = BATCH,
    stop: threading.Event | None = None,
) -> int:
    """One pass: store anew every answer time has made stale, a transaction per batch, with
    the events of the gates that turned. Returns how many answers were stored."""
    # Read first: on SQLite a write transaction takes the write lock even when there is
    # nothing to do, and most passes find nothing.
    with read_transaction(database) as session:
        if not readiness_service.any_expired(session, now=clock()):
            return 0
    stored = 0
    while stop is None or not stop.is_set():
        now = clock()
        with write_transaction(database) as session:
            changes = readiness_service.store_expired_batch(session, now=now, size=size)
            _tell(session, changes, now=now)
        if not changes:
            break
        stored += len(changes)
    return stored


def tell_time(session: Session, systems: Iterable[System], *, now: datetime) -> None:
    """For a write, once it has locked its systems and before it changes anything: stores
    anew, and tells, what time changed of the answers the scheduler has not stored yet.
    The write's own re-evaluation would otherwise store the turned gate with the write's
    event alone, and the time-driven change would never be told."""
    stale = [system for system in systems if readiness_service.is_expired(system, now)]
    if stale:
        _tell(session, readiness_service.store_time_changes(session, stale, now=now), now=now)


def _tell(session: Session, changes: list[TimeChange], *, now: datetime) -> None:
    new = [event for change in changes for event in time_events(change, now=now)]
    if new:
        events.append_many(session, new)


class ExpiryScheduler(BackgroundThread):
    """Runs `store_expired` every `interval` seconds from start-up to shutdown."""

    def __init__(
        self, database: Database, clock: Callable[[], datetime], *, interval: float
    ) -> None:
        super().__init__("readiness-expiry", stop_timeout=10)
        self._database = database
        self._clock = clock
        self._interval = interval

    def run(self, stop: threading.Event) -> None:
        failed = False
        while not stop.is_set():
            try:
                stored = store_expired(self._database, clock=self._clock, size=BATCH, stop=stop)
            except Exception as exc:
                if not failed:  # once, not every pass while the database is away
                    logger.warning(
                        "answers made stale by time not stored yet (%s): trying every %s s",
                        reason(exc),
                        self._interval,
                    )
                failed = True
            else:
                if failed:
                    logger.info("answers made stale by time are stored again")
                failed = False
                if stored:
                    logger.debug("stored %d answers made stale by time", stored)
            stop.wait(self._interval)
