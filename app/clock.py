from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def get_now(request: Request) -> datetime:
    """The request's notion of now; tests swap `app.state.clock` to move time."""
    clock: Clock = request.app.state.clock
    return clock()


# `async` so FastAPI resolves it on the event loop instead of spending a worker thread.
async def now_dependency(request: Request) -> datetime:
    return get_now(request)


Now = Annotated[datetime, Depends(now_dependency)]
