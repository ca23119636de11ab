"""When the database cannot serve: out of reach, or refusing writes.

Requests then answer 503 with Retry-After (app.errors.DatabaseUnavailable) rather than 500:
nothing is wrong with the request, and the same request succeeds once the database is back.
Other database errors stay 500s, among them SQLite's busy timeout running out on another
process's write lock, which says a write took far longer than any should.
"""

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError

# SQLite result codes; an extended code keeps its primary code in the low byte.
_SQLITE_READONLY = 8  # the file, its directory or the connection is read-only
_SQLITE_CANTOPEN = 14  # the file or its directory is gone or cannot be opened
# PostgreSQL's SQLSTATE for a write in a read-only transaction: a standby, or a database
# or role whose default_transaction_read_only is on.
_READ_ONLY_SQL_TRANSACTION = "25006"


def mark_connect_failures(engine: Engine) -> None:
    """Counts a failure to connect as a lost connection, as SQLAlchemy already counts a
    connection that breaks while in use, so that `connection_invalidated` says the database
    is out of reach whatever the driver's message (connection refused, unknown host, a file
    that cannot be opened, a server shutting down)."""

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # No connection: it failed while connecting. (A failed pre-ping is SQLAlchemy's to
        # judge: it reconnects when it counts it a disconnect.)
        if context.connection is None and not context.is_pre_ping:
            context.is_disconnect = True


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database is out of reach or refuses writes."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_READONLY, _SQLITE_CANTOPEN)
    return getattr(error.orig, "sqlstate", None) == _READ_ONLY_SQL_TRANSACTION


def reason(error: BaseException) -> str:
    """The driver's own first line, for a log: no statement, no parameters."""
    original = error.orig if isinstance(error, DBAPIError) else error
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"{type(original).__name__}: {first_line}"
