import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    # SQLite has one writer at a time; writers of this process wait their turn here, in
    # order, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms
    # and leaves the lock idle between polls. Other processes still queue on the busy
    # timeout: this gate is for throughput, correctness never depends on it.
    write_gate: AbstractContextManager[Any] = field(default_factory=nullcontext)

    def dispose(self) -> None:
        self.read_engine.dispose()
        self.write_engine.dispose()


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
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
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL with synchronous=NORMAL stays consistent after a crash; only the last
        # commits before a power loss can be lost.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)

    return engine


def create_database(url: str, *, pool_size: int = 10) -> Database:
    if url.startswith("sqlite"):
        return Database(
            read_engine=_sqlite_engine(url, begin="BEGIN", pool_size=20),
            write_engine=_sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=5),
            write_gate=threading.Lock(),
        )
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return Database(read_engine=engine, write_engine=engine)


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


# `async` so FastAPI resolves it on the event loop instead of spending a worker thread.
async def database_dependency(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


DatabaseDep = Annotated[Database, Depends(database_dependency)]
