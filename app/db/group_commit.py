"""Group commit: writes of one kind that arrive together share one transaction.

A route declares which of its writes may be batched (a `BatchedWrite` built from plain
service functions) and hands each item to `run_batched_write`; the services themselves only
take a session.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeAlias, TypeVar, cast

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from app.db.engines import Database
from app.db.unit_of_work import write_transaction
from app.outage import database_unavailable

T = TypeVar("T")
Item = TypeVar("Item")
# What one item of a batch came to: its result, or the error its request answers with.
ItemOutcome: TypeAlias = T | Exception

# How often an inline writer looks again at a write gate held by a worker thread.
_GATE_POLL_S = 0.001

_LOCKED = object()


class BatchedWrite(Generic[Item, T]):
    """A kind of write whose requests can share one transaction (group commit).

    `apply` writes the items in order, as if each had its own transaction one after
    another, and returns one outcome per item: an item that cannot be written (a 404,
    say) gets its error, which must leave nothing of that item written, while the rest
    commit. An exception out of `apply` fails the whole transaction; each item is then
    tried alone, so one bad item cannot fail the requests it happened to share it with.
    """

    def __init__(self, apply: Callable[[Session, list[Item]], Sequence[ItemOutcome[T]]]) -> None:
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
class LoopWriters:
    """The batched writers of one event loop."""

    # Batches take turns in arrival order (an asyncio.Lock wakes its waiters first come,
    # first served). Left to the loop's scheduling, writers at 64 connections interleaved
    # with every other request's steps and some waited many rounds: p99 about 4 s against
    # 1.1 s queued, at the same throughput.
    queue: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Items waiting for their kind's next batch.
    pending: "dict[BatchedWrite[Any, Any], _Pending[Any, Any]]" = field(default_factory=dict)
    # Batches queued or running: the loop keeps only weak references to tasks.
    batches: "set[asyncio.Task[None]]" = field(default_factory=set)


def _loop_writers(database: Database) -> LoopWriters:
    """`database`'s batched writers of the running event loop."""
    loop = asyncio.get_running_loop()
    writers = database.loop_writers.get(loop)
    if writers is None:
        writers = database.loop_writers[loop] = LoopWriters()
    return writers


# At most this many items go in one transaction: a backlog is written as several batches,
# each keeping the event loop for a bounded time (and SQLite's statements within their
# limit of bound variables).
MAX_BATCH = 256


async def run_batched_write(database: Database, kind: BatchedWrite[Item, T], item: Item) -> T:
    """Writes `item` and commits, in one transaction with others of its kind.

    Writes queue: SQLite has one writer, and on PostgreSQL every write appends an event
    under the lock that keeps the feed in commit order, held to its commit
    (`app.events.service.append_many`), so writers there take turns at the commit's flush
    to disk. Each paid for its own transaction, session, statements and flush, and under
    load most of a write's time went there. Here the items that arrive while a batch is
    written wait together and go as the next batch: one transaction, each statement run
    once for all of them, one flush.

    A batch runs on the event loop: on SQLite a write is CPU work in this process once the
    write lock is held, and handing it to a worker thread costs about as much again (the
    GIL changes hands around every SQLite call). It takes the write gate, polled so that
    the loop never blocks on a worker thread of this process that is writing, then BEGIN
    IMMEDIATE on a connection whose busy timeout is 0. Only when another process holds the
    database's write lock does the batch go to a worker thread, which waits on the busy
    timeout as every write there does. On PostgreSQL a batch waits on the network, so it
    runs in a worker thread; the batches of other processes run beside it.
    """
    writers = _loop_writers(database)
    pending = writers.pending.get(kind)
    if pending is None:
        # The first item of a batch queues the batch; later ones join it until it starts.
        pending = _queue_batch(database, writers, kind)
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    pending.items.append(item)
    pending.futures.append(future)
    return await future


def _queue_batch(
    database: Database, writers: LoopWriters, kind: BatchedWrite[Item, T]
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
    writers: LoopWriters,
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
    writers: LoopWriters,
    kind: BatchedWrite[Item, T],
    batch: _Pending[Item, T],
) -> None:
    engine = database.inline_write_engine
    try:
        # The whole batch, retries and waits included, takes its turn among the loop's
        # writers, so batches are written in the order they were queued.
        async with writers.queue:
            await asyncio.sleep(0)
            if engine is None:  # PostgreSQL
                _take(database, writers, kind, batch)
                try:
                    written: object = await run_in_threadpool(
                        _write_in_thread, database, lambda s: kind.apply(s, batch.items)
                    )
                except Exception as exc:
                    written = exc
            else:
                written = await _write_inline(database, engine, writers, kind, batch)
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
                and not database_unavailable(written)
            ):
                # The batch failed as a whole: each item alone, so that only the one at
                # fault fails. (Not when it timed out waiting for another process's lock:
                # each item would wait as long again, and every writer behind it with it.
                # Nor when the database went away: each item would wait to connect again,
                # and a commit cut short may have committed, so each is answered 503.)
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
            else cast(Sequence[ItemOutcome[T]], written)
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


async def _write_inline(
    database: Database,
    engine: Engine,
    writers: LoopWriters,
    kind: BatchedWrite[Item, T],
    batch: _Pending[Item, T],
) -> object:
    """On SQLite: the batch written on the event loop once this process's write gate is
    free, or `_LOCKED` when another process holds the database's write lock."""
    while not database.write_gate.acquire(blocking=False):
        await asyncio.sleep(_GATE_POLL_S)
    try:
        _take(database, writers, kind, batch)
        try:
            return _write_unless_locked(engine, lambda s: kind.apply(s, batch.items))
        except Exception as exc:
            return exc
    finally:
        database.write_gate.release()


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
