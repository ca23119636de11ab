"""The database layer: engines (`engines`), the unit of work (`unit_of_work`), group commit
on SQLite (`group_commit`) and the WAL checkpointer (`sqlite_wal`). The names most modules
need are here, so that a router imports them in one line."""

from app.db.engines import Database
from app.db.unit_of_work import DatabaseDep, read_transaction, run_read, write_transaction

__all__ = ["Database", "DatabaseDep", "read_transaction", "run_read", "write_transaction"]
