"""Opaque cursors and the `{items, next_cursor}` page shape every list uses."""

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel

from app.errors import InvalidCursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 200
# Ids are INTEGER columns (32-bit on PostgreSQL): anything larger is not an id this service
# issued, and would fail in the database rather than as a client error.
MAX_ID = 2**31 - 1

T = TypeVar("T")

IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page."),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(position: int | str) -> str:
    raw = json.dumps({"p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))["p"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursor("The cursor is not one this service issued.") from exc


def decode_int_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    position = _decode(cursor)
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_ID:
        raise InvalidCursor("The cursor is not one this service issued.")
    return position


def decode_str_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    position = _decode(cursor)
    if not isinstance(position, str) or len(position) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("The cursor is not one this service issued.")
    return position


def next_cursor_for(rows: list[T], limit: int, position: Callable[[T], int | str]) -> str | None:
    """The cursor after `rows` when the query fetched `limit + 1` rows to look ahead."""
    return encode_cursor(position(rows[limit - 1])) if len(rows) > limit else None
