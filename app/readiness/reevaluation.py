"""Storing anew the answers evaluated by other rules than this code's
(app.readiness.rules_version), a batch per transaction so writers wait for one batch at most.

Run after an upgrade that changed the rules: `make reevaluate` (this module's `main`, with a
progress bar), or on a background thread in every worker at start-up
(READINESS_REEVALUATE_ON_START, on by default). Until a system is stored anew its stale
answer is never served: reads evaluate it afresh.
"""

import argparse
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from app.background import BackgroundThread
from app.clock import system_clock
from app.config import get_settings
from app.db import Database, read_transaction, write_transaction
from app.db.engines import create_database
from app.outage import reason
from app.readiness import rules_version
from app.readiness import service as readiness_service

logger = logging.getLogger("app")

# Seconds between tries while the database cannot be reached at start-up.
RETRY_S = 5.0


def count_to_do(database: Database, *, everything: bool) -> int:
    with read_transaction(database) as session:
        return readiness_service.count_to_reevaluate(session, only_other_rules=not everything)


def reevaluate(
    database: Database,
    *,
    clock: Callable[[], datetime],
    everything: bool = False,
    size: int = readiness_service.REEVALUATE_BATCH,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-evaluate and store, by id, the systems whose answer is of other rules (every
    system, with `everything`), a transaction per batch of `size`; `progress` hears how many
    each batch did. Returns how many were stored; stops after the batch running when `stop`
    is set."""
    stored = 0
    after = 0
    while stop is None or not stop.is_set():
        with write_transaction(database) as session:
            done = readiness_service.reevaluate_batch(
                session, after=after, now=clock(), only_other_rules=not everything, size=size
            )
        if not done:
            break
        stored += len(done)
        after = done[-1]
        if progress is not None:
            progress(len(done))
    return stored


class StaleRulesReevaluation(BackgroundThread):
    """At start-up, stores anew the answers of other rules. Every worker runs one: a batch
    skips the systems another holds (PostgreSQL), so they share the work."""

    def __init__(self, database: Database, clock: Callable[[], datetime]) -> None:
        super().__init__("stale-rules-reevaluation", stop_timeout=10)
        self._database = database
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        failed = False
        while not stop.is_set():
            try:
                # Read first: on SQLite a write transaction takes the write lock even when
                # there is nothing to do.
                if count_to_do(self._database, everything=False) == 0:
                    return
                stored = reevaluate(self._database, clock=self._clock, stop=stop)
            except Exception as exc:
                if not failed:  # once, not every few seconds while the database is away
                    logger.warning(
                        "answers of other rules not re-evaluated yet (%s): trying again every %s s",
                        reason(exc),
                        RETRY_S,
                    )
                failed = True
                stop.wait(RETRY_S)
            else:
                if stored:
                    logger.info(
                        "re-evaluated %d stored answers under rules version %d",
                        stored,
                        rules_version.RULES_VERSION,
                    )
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make reevaluate",
        description=(
            "Re-evaluate and store the readiness answers evaluated by other rules than this"
            f" code's (rules version {rules_version.RULES_VERSION}), in batches, against"
            " DATABASE_URL."
        ),
    )
    parser.add_argument(
        "--all", action="store_true", help="re-evaluate every system, not only the stale ones"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=readiness_service.REEVALUATE_BATCH,
        help="systems per transaction (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    # Only the command draws a progress bar: the service, which imports this module for
    # its start-up thread, does not load rich.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    settings = get_settings()
    database = create_database(
        settings.database_url,
        pool_size=1,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    try:
        total = count_to_do(database, everything=args.all)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("re-evaluating", total=total)
            stored = reevaluate(
                database,
                clock=system_clock,
                everything=args.all,
                size=args.batch,
                progress=lambda done: bar.advance(task, done),
            )
    finally:
        database.dispose()
    print(f"{stored} answers stored under rules version {rules_version.RULES_VERSION}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
