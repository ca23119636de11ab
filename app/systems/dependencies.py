from typing import Annotated

from fastapi import Path

from app.schemas import NO_NUL

# Systems are looked up inside each endpoint's unit of work rather than in a dependency:
# a dependency runs in a worker-thread call of its own, and a write must hold its row
# lock and connection within one call (see app.db.write_transaction).
KeyPath = Annotated[str, Path(max_length=63, pattern=NO_NUL, description="The system's key.")]
