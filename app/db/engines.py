"""The engines of one process, set up for its back-end: SQLite (WAL, BEGIN IMMEDIATE for
writers, busy timeouts) or PostgreSQL (one pooled engine, a connect timeout)."""

import asyncio
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine, event

from app.config import SQLITE_BUSY_TIMEOUT_MS
from app.outage import mark_connect_failures

if TYPE_CHECKING:
    from app.db.group_commit import LoopWriters

PG_CONNECT_TIMEOUT_S = 5
WAL_AUTOCHECKPOINT_PAGES = 10_000  # 40 MB at 4 kB pages


class WriteGate(Protocol):
    """What `Database.write_gate` offers: a `threading.Lock`, or a gate that never closes."""

    def acquire(self, blocking: bool = ...) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


class _OpenGate:
    """PostgreSQL's writers wait on row locks, never on a gate of one process."""

    def acquire(self, blocking: bool = True) -> bool:  # noqa: ARG002 (the Lock signature)
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> bool:
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass


_NO_GATE = _OpenGate()


@dataclass(frozen=True)
class Database:
    """The engines of one process.

    On SQLite, writing transactions start with BEGIN IMMEDIATE so that concurrent writers
    queue on the busy timeout instead of failing when a read lock cannot be upgraded;
    reads keep a plain BEGIN and run beside the writer (WAL). On PostgreSQL all three share
    one pool: reads in REPEATABLE READ (one snapshot for all their statements), lookups in
    autocommit, writes in READ COMMITTED with row locks.
    """

    read_engine: Engine
    write_engine: Engine
    # For single-statement lookups that need no snapshot across statements: they skip the
    # explicit BEGIN (each statement reads on its own), saving a round of statements on
    # the hottest read. PostgreSQL: the same pool, its connections in autocommit.
    lookup_engine: Engine
    # SQLite has one writer at a time; writers of this process wait their turn here, in
    # order, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms
    # and leaves the lock idle between polls. Other processes still queue on the busy
    # timeout: this gate is for throughput, correctness never depends on it.
    write_gate: WriteGate = field(default_factory=lambda: _NO_GATE)
    # Whether short reads run on the event loop itself (see `run_read`).
    inline_reads: bool = False
    # SQLite: writing transactions that never wait for the write lock (busy timeout 0), so
    # `run_batched_write` can try them on the event loop. None: writes always go to a worker
    # thread.
    inline_write_engine: Engine | None = None
    # The group commit's state for each event loop (app.db.group_commit), kept with the
    # engines it writes through: each database batches its own writes.
    loop_writers: "WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWriters]" = field(
        default_factory=WeakKeyDictionary
    )

    def dispose(self) -> None:
        self.read_engine.dispose()
        self.write_engine.dispose()
        self.lookup_engine.dispose()
        if self.inline_write_engine is not None:
            self.inline_write_engine.dispose()


def _sqlite_engine(url: str, *, begin: str | None, pool_size: int, busy_timeout_ms: int) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
        pool_size=pool_size,
        max_overflow=pool_size,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # WAL with synchronous=NORMAL stays consistent after a crash; only the last
        # commits before a power loss can be lost.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The app's checkpointer thread (`app.db.sqlite_wal.WalCheckpointer`) copies the log
        # into the database; writers do it themselves only past this many pages, should it
        # fall behind or not run (tools, tests without a lifespan).
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

    return engine


def create_database(
    url: str, *, pool_size: int = 10, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> Database:
    database = _engines(url, pool_size=pool_size, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms)
    for engine in {
        database.read_engine,
        database.write_engine,
        database.lookup_engine,
        database.inline_write_engine,
    }:
        if engine is not None:
            mark_connect_failures(engine)
    return database


def _engines(url: str, *, pool_size: int, sqlite_busy_timeout_ms: int) -> Database:
    if url.startswith("sqlite"):
        busy = sqlite_busy_timeout_ms
        return Database(
            read_engine=_sqlite_engine(url, begin="BEGIN", pool_size=20, busy_timeout_ms=busy),
            write_engine=_sqlite_engine(
                url, begin="BEGIN IMMEDIATE", pool_size=5, busy_timeout_ms=busy
            ),
            lookup_engine=_sqlite_engine(url, begin=None, pool_size=5, busy_timeout_ms=busy),
            write_gate=threading.Lock(),
            inline_reads=True,
            inline_write_engine=_sqlite_engine(
                url, begin="BEGIN IMMEDIATE", pool_size=1, busy_timeout_ms=0
            ),
        )
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # JIT compiling pays off for long analytical queries, not for these: it added about
        # 100 ms to each report aggregate at 100,000 systems (make bench-scale). A server
        # that takes the connection but never answers fails it after connect_timeout
        # seconds (a 503), rather than holding the request for good. Sessions in UTC: the
        # driver then hands out datetimes in UTC, which need no conversion per value (a
        # server zone such as Etc/UTC is a zoneinfo, and converting from it cost a third of
        # reading the mirror's million rows).
        connect_args={
            "options": "-c jit=off -c TimeZone=UTC",
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
        },
    )
    # Lookups read a row or two with no snapshot to share, so they skip BEGIN and the
    # ROLLBACK on return: two round trips to the server fewer on the hottest read.
    lookups = engine.execution_options(isolation_level="AUTOCOMMIT")
    # A read of several statements sees one snapshot, as on SQLite (under READ COMMITTED
    # each statement would see what committed before it: a report could count a system
    # stored between two of its statements twice). Reads only, so nothing can fail to
    # serialize.
    reads = engine.execution_options(isolation_level="REPEATABLE READ")
    return Database(read_engine=reads, write_engine=engine, lookup_engine=lookups)
