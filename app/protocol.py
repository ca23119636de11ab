"""The HTTP/1.1 protocol uvicorn serves the app with: uvicorn's httptools protocol, with a
bound on each request's line and headers.

httptools (llhttp) has no such bound. A header value that arrives in pieces is joined in
memory, a copy of the whole at each piece, until the header ends; a URL likewise. So a
client streaming a 50 MB header made the worker hold, and copy again and again, 50 MB. Here
a request whose line and headers pass MAX_HEAD_BYTES gets 431 and its connection is closed,
whether its headers ever end or not.

Served with `uvicorn --http app.protocol:BoundedHttpToolsProtocol`: `make run`, the image's
command, the benches. It replaces HttpToolsProtocol.data_received (as of uvicorn 0.54) to
tell its own refusal from a malformed request.
"""

import asyncio
import logging
import time
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from app.errors import HeadersTooLarge, problem_response

# The request line and headers of one request, as sent.
MAX_HEAD_BYTES = 16 * 1024
# What the request line takes besides method and URL (" ", " HTTP/1.1" and CRLF), and a
# header line besides name and value (": " and CRLF).
_REQUEST_LINE_OVERHEAD = len(b"  HTTP/1.1\r\n")
_HEADER_LINE_OVERHEAD = len(b": \r\n")

logger = logging.getLogger("app")


def _refusal_tail() -> bytes:
    """The 431's headers after the server's own (Date, Server), and its body."""
    response = problem_response(
        HeadersTooLarge.status,
        HeadersTooLarge.type,
        HeadersTooLarge.title,
        f"The request line and headers are limited to {MAX_HEAD_BYTES} bytes.",
    )
    return b"".join(
        [
            b"content-type: " + response.headers["content-type"].encode() + b"\r\n",
            b"content-length: " + str(len(response.body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            bytes(response.body),
        ]
    )


_REFUSAL_TAIL = _refusal_tail()


class _HeadTooLarge(Exception):
    """Raised in a parser callback, to stop the parser."""


class _Refusals:
    """Logged at most once a minute with a count: a flood of refusals must not flood the log
    (nor spend the worker's time writing it)."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        self._count = 0
        self._next_log = 0.0

    def note(self) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next_log:
            logger.warning(
                "%d request(s) refused with 431: line and headers over %d bytes",
                self._count,
                MAX_HEAD_BYTES,
            )
            self._count = 0
            self._next_log = now + self.EVERY_S


_refusals = _Refusals()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Counts, per chunk read, the bytes of the headers being read; no per-header work.

    - Chunks read whole while headers are coming (none of them ending there) add up to a
      count of the headers' bytes so far: past the bound, the request is refused at once,
      so headers that never end cost one chunk more than the bound at most.
    - When the headers end, the chunks they spread over give an upper bound on their size;
      only past MAX_HEAD_BYTES is their exact size (URL, names, values, separators)
      summed, so a request refused is one whose headers are over the bound.

    A chunk where a body or the previous request ends and the next headers begin counts
    towards the upper bound only: it may hold a body's bytes, which are not headers'.

    After the headers, what a message sends besides its body (chunk sizes, line ends and,
    at the end of a chunked body, trailer fields) is bounded the same way: a client
    streaming an endless trailer is refused like one streaming an endless header. Trailer
    fields themselves are dropped: the app has its headers already, and a field arriving
    after them (an Authorization, an Idempotency-Key) must not join them unchecked.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # From the connection's start and each request's end until its headers end.
        self._reading_head = True
        self._heads_read = 0
        self._head_received = 0  # bytes of the headers being read, in whole chunks
        self._head_bound = 0  # at least as many bytes as those headers, read so far
        self._chunk_size = 0
        self._refused = False
        # Of the message whose body is being read: body bytes, and all else it sent.
        self._body_bytes = 0
        self._framing_bytes = 0
        self._messages_done = 0

    def data_received(self, data: bytes) -> None:
        reading_head = self._reading_head
        heads_read = self._heads_read
        messages_done = self._messages_done
        body_before = self._body_bytes
        self._chunk_size = len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if not self._reading_head:
            # Counted only for chunks read whole within the body's message: one where the
            # body begins or ends holds bytes of the headers or the next request too.
            if not reading_head and self._messages_done == messages_done:
                self._framing_bytes += len(data) - (self._body_bytes - body_before)
                if self._framing_bytes > MAX_HEAD_BYTES:
                    self._refuse()
            return
        self._head_bound += len(data)
        if reading_head and self._heads_read == heads_read:
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._refuse()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._reading_head:  # not a trailer field
            super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        within = self._head_bound + self._chunk_size <= MAX_HEAD_BYTES
        self._reading_head = False
        self._heads_read += 1
        self._head_received = self._head_bound = 0
        self._body_bytes = self._framing_bytes = 0
        if not within and self._head_size() > MAX_HEAD_BYTES:
            self._refuse()
            raise _HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._messages_done += 1
        super().on_message_complete()

    def _head_size(self) -> int:
        """The request line and headers as sent in the usual form (`Name: value` lines)."""
        headers = self.headers
        return (
            len(self.parser.get_method())
            + len(self.url)
            + _REQUEST_LINE_OVERHEAD
            + sum(len(name) + len(value) for name, value in headers)
            + _HEADER_LINE_OVERHEAD * len(headers)
            + len(b"\r\n")
        )

    def _refuse(self) -> None:
        self._refused = True
        _refusals.note()
        if self.cycle is not None and self.cycle.response_started:
            # Too late for an answer of its own (the app answered before the trailer ended).
            self.transport.close()
            return
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.append(_REFUSAL_TAIL)
        self.transport.write(b"".join(content))
        self.transport.close()
