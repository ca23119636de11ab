from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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

    @property
    def dialect(self) -> str:
        return self.write_engine.dialect.name

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
        )
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return Database(read_engine=engine, write_engine=engine)


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: services flush, and this is the one place that commits.

    Declared with `scope="function"` so the commit happens before the response is sent:
    a commit that fails becomes an error response, never a 2xx.
    """
    database: Database = request.app.state.database
    engine = database.read_engine if request.method in SAFE_METHODS else database.write_engine
    with Session(engine, expire_on_commit=False) as session:
        yield session
        session.commit()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
