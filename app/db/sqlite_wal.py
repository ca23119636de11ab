"""SQLite's write-ahead log, copied into the database off the request path."""

import logging
import threading

from app.background import BackgroundThread
from app.db.engines import Database

logger = logging.getLogger("app.db")

# How often the checkpointer copies what writers have logged since into the database.
WAL_CHECKPOINT_INTERVAL_S = 0.25


class WalCheckpointer(BackgroundThread):
    """Copies SQLite's write-ahead log into the database on a thread of its own.

    SQLite checkpoints inside the commit that fills the log past `wal_autocheckpoint`
    pages, so every so often a write paid for copying thousands of pages, on the event
    loop where writes run. Here a thread does it in the background: SQLite does the work
    without holding the GIL, and a PASSIVE checkpoint never waits for, nor blocks, readers
    and writers. PostgreSQL has nothing to do here.
    """

    def __init__(self, database: Database) -> None:
        super().__init__("sqlite-wal-checkpointer")
        self._database = database

    def needed(self) -> bool:
        return self._database.inline_write_engine is not None

    def checkpoint(self) -> None:
        with self._database.lookup_engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.wait(WAL_CHECKPOINT_INTERVAL_S):
            try:
                self.checkpoint()
            except Exception:
                # Writers checkpoint past `wal_autocheckpoint` anyway; try again later. Said
                # once per spell of failures: a database that is gone fails every try.
                if not failing:
                    logger.exception("WAL checkpoint failed; retrying quietly until it works")
                failing = True
                continue
            if failing:
                logger.info("WAL checkpoint working again")
            failing = False
