import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Annotated, Any, Generic, Protocol, TypeAlias, TypeVar, cast
from weakref import WeakKeyDictionary

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app.background import BackgroundThread
from app.config import SQLITE_BUSY_TIMEOUT_MS
from app.outage import mark_connect_failures

logger = logging.getLogger(__name__)

PG_CONNECT_TIMEOUT_S = 5
WAL_AUTOCHECKPOINT_PAGES = 10_000  # 40 MB at 4 kB pages
# How often the checkpointer copies what writers have logged since into the database.
WAL_CHECKPOINT_INTERVAL_S = 0.25

T = TypeVar("T")


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
    reads keep a plain BEGIN and run beside the writer (WAL). PostgreSQL needs no such
    split, so both names point at one pooled engine there.
    """

    read_engine: Engine
    write_engine: Engine
    # For single-statement lookups that need no snapshot across statements: on SQLite
    # they skip the explicit BEGIN (each statement reads on its own), saving a round of
    # statements on the hottest read. PostgreSQL: the same pooled engine.
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
    # Inline writers of each event loop (see `run_batched_write`).
    _inline_writers: "WeakKeyDictionary[asyncio.AbstractEventLoop, _InlineWriters]" = field(
        default_factory=WeakKeyDictionary
    )

    def inline_writers(self) -> "_InlineWriters":
        loop = asyncio.get_running_loop()
        writers = self._inline_writers.get(loop)
        if writers is None:
            writers = self._inline_writers[loop] = _InlineWriters()
        return writers

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
        # The app's checkpointer thread (`WalCheckpointer`) copies the log into the
        # database; writers do it themselves only past this many pages, should it fall
        # behind or not run (tools, tests without a lifespan).
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
        # seconds (a 503), rather than holding the request for good.
        connect_args={"options": "-c jit=off", "connect_timeout": PG_CONNECT_TIMEOUT_S},
    )
    return Database(read_engine=engine, write_engine=engine, lookup_engine=engine)


class WalCheckpointer(BackgroundThread):
    """Copies SQLite's write-ahead log into the database on a thread of its own.

    SQLite checkpoints inside the commit that fills the log past `wal_autocheckpoint`
    pages, so every so often a write paid for copying thousands of pages, on the event
    loop where writes run. Here a thread does it in the background: SQLite does the work
    without holding the GIL, and a PASSIVE checkpoint never waits for, nor blocks, readers
    and writers. PostgreSQL has nothing to do here.
    """

    def __init__(self, database: "Database") -> None:
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


@contextmanager
def read_transaction(database: Database) -> Iterator[Session]:
    with Session(database.read_engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_transaction(database: Database) -> Iterator[Session]:
    """The request's unit of work: services flush, and this is the one place that commits.

    Endpoints open it inside their own body, so a connection (and on SQLite the write
    lock) is taken and released within one worker-thread call. A dependency that held it
    across FastAPI's separate threadpool calls would let lock holders wait for a free
    thread while every thread waits for the lock.
    """
    with database.write_gate, Session(database.write_engine, expire_on_commit=False) as session:
        yield session
        session.commit()


async def run_read(database: Database, work: Callable[[], T]) -> T:
    """Runs a short read-only unit of work, on the event loop where that is cheaper.

    On SQLite a read is a few page lookups in this process's cache, and in WAL mode it
    never waits for a writer; handing it to a worker thread costs more than the read
    itself (the GIL changes hands around every SQLite call), so it runs in place. On
    PostgreSQL a read waits on the network, so it goes to a worker thread. `work` must
    not write: a write can wait for the write gate, and the loop must never wait.
    """
    if database.inline_reads:
        # A turn for the loop before and after: requests that arrived meanwhile get
        # read and answered in order instead of queueing behind a run of inline reads
        # (at 64 connections this took p99 from ~660 ms to ~50 ms).
        await asyncio.sleep(0)
        result = work()
        await asyncio.sleep(0)
        return result
    return await run_in_threadpool(work)


# How often an inline writer looks again at a write gate held by a worker thread.
_GATE_POLL_S = 0.001


_LOCKED = object()


Item = TypeVar("Item")
# What one item of a batch came to: its result, or the error its request answers with.
ItemOutcome: TypeAlias = T | Exception


class BatchedWrite(Generic[Item, T]):
    """A kind of write whose requests can share one transaction (group commit).

    `apply` writes the items in order, as if each had its own transaction one after
    another, and returns one outcome per item: an item that cannot be written (a 404,
    say) gets its error, which must leave nothing of that item written, while the rest
    commit. An exception out of `apply` fails the whole transaction; each item is then
    tried alone, so one bad item cannot fail the requests it happened to share it with.
    """

    def __init__(self, apply: Callable[[Session, list[Item]], list[ItemOutcome[T]]]) -> None:
        self.apply = apply

    def apply_one(self, session: Session, item: Item) -> T:
        outcome = self.apply(session, [item])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@dataclass
class _Pending(Generic[Item, T]):
    items: list[Item] = field(default_factory=list)
    futures: "list[asyncio.Future[T]]" = field(default_factory=list)


@dataclass
class _InlineWriters:
    """The inline writers of one event loop."""

    # Batches take turns in arrival order (an asyncio.Lock wakes its waiters first come,
    # first served). Left to the loop's scheduling, writers at 64 connections interleaved
    # with every other request's steps and some waited many rounds: p99 about 4 s against
    # 1.1 s queued, at the same throughput.
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Items waiting for their kind's next batch.
    pending: "dict[BatchedWrite[Any, Any], _Pending[Any, Any]]" = field(default_factory=dict)
    # Batches queued or running: the loop keeps only weak references to tasks.
    batches: "set[asyncio.Task[None]]" = field(default_factory=set)


# At most this many items go in one transaction: a backlog is written as several batches,
# each keeping the event loop for a bounded time (and SQLite's statements within their
# limit of bound variables).
MAX_BATCH = 256


async def run_batched_write(database: Database, kind: BatchedWrite[Item, T], item: Item) -> T:
    """Writes `item` and commits, in one transaction with others of its kind on SQLite.

    SQLite has one writer, so writes queue; each paid for its own transaction, session
    and statements, and under load most of a write's time went there. Here the items that
    arrive while a write runs wait together and go as one batch: one transaction, each
    statement run once for all of them.

    A batch runs on the event loop: on SQLite a write is CPU work in this process once the
    write lock is held, and handing it to a worker thread costs about as much again (the
    GIL changes hands around every SQLite call). It takes the write gate, polled so that
    the loop never blocks on a worker thread of this process that is writing, then BEGIN
    IMMEDIATE on a connection whose busy timeout is 0. Only when another process holds the
    database's write lock does the batch go to a worker thread, which waits on the busy
    timeout as every write there does. PostgreSQL writes in parallel, so each item has a
    transaction of its own there, in a worker thread.
    """
    if database.inline_write_engine is None:
        alone = partial(kind.apply_one, item=item)
        return await run_in_threadpool(_write_in_thread, database, alone)
    writers = database.inline_writers()
    pending = writers.pending.get(kind)
    if pending is None:
        # The first item of a batch queues the batch; later ones join it until it starts.
        pending = _queue_batch(database, writers, kind)
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    pending.items.append(item)
    pending.futures.append(future)
    return await future


def _queue_batch(
    database: Database, writers: _InlineWriters, kind: BatchedWrite[Item, T]
) -> _Pending[Item, T]:
    """A new pending batch of `kind`, and the task that will write it. There is one pending
    batch per kind at a time; items join it until its task takes it."""
    pending: _Pending[Item, T] = _Pending()
    writers.pending[kind] = pending
    task = asyncio.ensure_future(_write_batch(database, writers, kind, pending))
    writers.batches.add(task)
    task.add_done_callback(writers.batches.discard)
    return pending


def _take(
    database: Database,
    writers: _InlineWriters,
    kind: BatchedWrite[Item, T],
    batch: _Pending[Item, T],
) -> None:
    """Takes `batch` off the pending one, at the last moment: the items that came while it
    waited for its turn go with it, up to MAX_BATCH; the rest make the next batch."""
    del writers.pending[kind]
    if len(batch.items) > MAX_BATCH:
        rest = _queue_batch(database, writers, kind)
        rest.items, batch.items = batch.items[MAX_BATCH:], batch.items[:MAX_BATCH]
        rest.futures, batch.futures = batch.futures[MAX_BATCH:], batch.futures[:MAX_BATCH]


async def _write_batch(
    database: Database,
    writers: _InlineWriters,
    kind: BatchedWrite[Item, T],
    batch: _Pending[Item, T],
) -> None:
    engine = database.inline_write_engine
    assert engine is not None
    try:
        # The whole batch, retries and waits included, takes its turn among the inline
        # writers, so batches are written in the order they were queued.
        async with writers.queue:
            await asyncio.sleep(0)
            while not database.write_gate.acquire(blocking=False):
                await asyncio.sleep(_GATE_POLL_S)
            try:
                _take(database, writers, kind, batch)
                try:
                    written = _write_unless_locked(engine, lambda s: kind.apply(s, batch.items))
                except Exception as exc:
                    written = exc
            finally:
                database.write_gate.release()
            if written is _LOCKED:
                # Another process holds the write lock: the batch waits for it in a worker
                # thread, on the busy timeout like any write there.
                try:
                    written = await run_in_threadpool(
                        _write_in_thread, database, lambda s: kind.apply(s, batch.items)
                    )
                except Exception as exc:
                    written = exc
            if (
                isinstance(written, Exception)
                and len(batch.items) > 1
                and not _lock_timed_out(written)
            ):
                # The batch failed as a whole: each item alone, so that only the one at
                # fault fails. (Not when it timed out waiting for another process's lock:
                # each item would wait as long again, and every writer behind it with it.)
                for item, future in zip(batch.items, batch.futures, strict=True):
                    try:
                        alone = partial(kind.apply_one, item=item)
                        _settle(future, await run_in_threadpool(_write_in_thread, database, alone))
                    except Exception as exc:  # the item's own request raises it
                        _settle(future, exc)
                return
        # A failure of the whole batch (one item, or the lock never came) is every item's.
        outcomes = (
            [written] * len(batch.futures)
            if isinstance(written, Exception)
            else cast(list[ItemOutcome[T]], written)
        )
        for future, outcome in zip(batch.futures, outcomes, strict=True):
            _settle(future, outcome)
    finally:
        if writers.pending.get(kind) is batch:  # stopped (shutdown) before it was taken
            del writers.pending[kind]
        # Whatever stopped it, none of its requests may wait for ever.
        for future in batch.futures:
            if not future.done():
                future.set_exception(RuntimeError("the write batch ended without an answer"))


def _lock_timed_out(error: Exception) -> bool:
    """SQLite's busy timeout ran out: another process held the write lock all along."""
    return isinstance(error, OperationalError) and "locked" in str(error.orig)


def _settle(future: "asyncio.Future[T]", outcome: ItemOutcome[T]) -> None:
    if future.done():  # the request went away (cancelled)
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _write_unless_locked(engine: Engine, work: Callable[[Session], T]) -> object:
    """`work`'s result, committed; or `_LOCKED`, at once, when another process holds the
    database's write lock."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            session.connection()  # BEGIN IMMEDIATE: the write lock, or busy at once
        except OperationalError:
            return _LOCKED
        result = work(session)
        session.commit()
        return result


def _write_in_thread(database: Database, work: Callable[[Session], T]) -> T:
    with write_transaction(database) as session:
        return work(session)


# `async` so FastAPI resolves it on the event loop instead of spending a worker thread.
async def database_dependency(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(database_dependency)]
