import itertools
import json
import logging
import re
import secrets
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLarge, problem_response, unexpected_error
from app.metrics import http as http_metrics


class BodySizeLimit:
    """Refuses bodies over the limit with 413 before anything parses them.

    A declared Content-Length is checked up front; a body without one (chunked) is read
    up to the limit and replayed to the app.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            PayloadTooLarge.status,
            PayloadTooLarge.type,
            PayloadTooLarge.title,
            f"Request bodies are limited to {self.max_bytes} bytes.",
        )
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class UnexpectedErrors:
    """Answers an unhandled exception with the 500 problem right here, inside the other
    middleware, so that answer too carries the security headers and `X-Request-ID` and is
    logged and counted like any other. (Starlette's own handler sits outside them all.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            if started:  # too late for another answer: the server closes the connection
                raise
            response = await unexpected_error(Request(scope), exc)
            await response(scope, receive, send)


class HeadAsGet:
    """HEAD answers as GET would, without the body (RFC 9110, 9.3.2): same status, same
    headers, Content-Length included. Routes declare GET alone, so the OpenAPI document
    lists no HEAD operations.

    Everything inside sees a GET. The server keeps its own scope, which still says HEAD (so
    it sends no body either), and the request log outside reads the method from it; the route
    the router matched is copied back for that log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(as_get, receive, without_body)
        finally:
            if "route" in as_get:
                scope["route"] = as_get["route"]


class SecurityHeaders:
    """Headers every response carries: no MIME sniffing, no framing, no referrer leaks, and
    API answers (which depend on the caller's key) kept out of shared caches."""

    COMMON = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope["path"].startswith("/v1/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + list(self.COMMON)
                if private:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("app.access")
# Generated ids: a random tag per process and a counter, unique across workers and
# restarts without a system call for randomness per request.
_PROCESS_TAG = secrets.token_hex(8)
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    return f"{_PROCESS_TAG}{next(_request_numbers):016x}"


class RequestLog:
    """Request metrics (app.metrics.http) and one JSON line per request (method, route,
    status, duration, request id, the API key's id; never a secret), and an `X-Request-ID`
    honoured when sane, else generated, and returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = sent.decode() if _REQUEST_ID.match(sent) else _new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            seconds = time.perf_counter() - started
            # The template, not the path: one series per route, whatever keys are asked.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            state = scope.get("state", {})
            http_metrics.observe(
                route=route, method=scope["method"], status=status, seconds=seconds
            )
            line = {
                "event": "request",
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": request_id,
                "api_key_id": state.get("api_key_id"),
            }
            if "oidc_subject" in state:
                line["oidc_subject"] = state["oidc_subject"]
            access_log.info(json.dumps(line, separators=(",", ":")))
