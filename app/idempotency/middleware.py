"""`Idempotency-Key` on POST (docs/api.md): the same key and request replay the first response
without doing the work again; the same key with another request is a 422; a second request
while the first still runs gets 409. Keys are scoped to the credentials that sent them and
kept for IDEMPOTENCY_RETENTION_HOURS (48 by default): an older record counts as forgotten, and
records past that period are deleted, a chunk at a time, at most once a minute per process
(more often while a backlog remains)."""

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth import service as auth_service
from app.auth.dependencies import Identities
from app.auth.roles import ActorKind, Principal
from app.errors import DomainError, problem_response
from app.idempotency import service

logger = logging.getLogger(__name__)

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 200
# Not replayed: responses that carry a secret (a key, a webhook's signing secret) are never
# stored, the MLflow webhook takes no key but has replays of its own, by delivery id
# (app.integrations.mlflow), and verifying the audit trail writes nothing: a replayed `ok`
# would hide what changed since.
NOT_REPLAYABLE = frozenset(
    {"/v1/api-keys", "/v1/webhooks", "/v1/integrations/mlflow/webhook", "/v1/audit/verify"}
)
# Headers that describe one delivery rather than the response itself.
_NOT_REPLAYED = {"date", "server", "content-length"}


# How often a process deletes records past the retention period (before a claim).
PURGE_EVERY = timedelta(minutes=1)


def _caller(principal: Principal, secret: str) -> str:
    """Whose keys these are: an API key's, or an OIDC identity's by issuer, subject, role and
    teams, so a retry with a fresh token of the same workload still replays, while jobs
    that share a subject but not their rights (GitHub's `sub` is the same on every branch)
    never see each other's answers."""
    if principal.kind == ActorKind.oidc:
        teams = ",".join(sorted(principal.teams)) if principal.teams is not None else "*"
        identity = "\n".join(
            ["oidc", principal.issuer or "", principal.subject or "", principal.role, teams]
        )
        return hashlib.sha256(identity.encode()).hexdigest()
    return auth_service.hash_key(secret)


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._next_purge: datetime | None = None

    def _purge_due(self, now: datetime) -> bool:
        if self._next_purge is not None and now < self._next_purge:
            return False
        self._next_purge = now + PURGE_EVERY
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ())) if scope["type"] == "http" else {}
        raw_key = headers.get(HEADER)
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or raw_key is None
            or scope["path"] in NOT_REPLAYABLE
        ):
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1").strip()
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            response = problem_response(
                400,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.",
            )
            await response(scope, receive, send)
            return

        state = scope["app"].state
        database, now = state.database, state.clock()
        identities: Identities = state.identities
        credentials = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = credentials.partition(" ")
        secret = secret.strip()
        # Only a valid caller's requests are remembered and replayed: a revoked key gets its
        # 401 (an unmapped token its 403) from the route, never a stored answer.
        principal = None
        if scheme.lower() == "bearer" and secret:
            presented = HTTPAuthorizationCredentials(scheme="Bearer", credentials=secret)
            try:
                principal = await anyio.to_thread.run_sync(
                    lambda: identities.identify(presented, now=now)
                )
            except DomainError:
                principal = None
        if principal is None:
            await self.app(scope, receive, send)
            return

        body = await _read_body(receive)
        caller = _caller(principal, secret)
        fingerprint = hashlib.sha256(
            b"\n".join(
                [scope["method"].encode(), scope["path"].encode(), scope["query_string"], body]
            )
        ).hexdigest()
        expired_before = now - timedelta(hours=state.settings.idempotency_retention_hours)
        if self._purge_due(now):
            purged = await anyio.to_thread.run_sync(
                lambda: service.purge_expired(database, before=expired_before)
            )
            if purged == service.PURGE_CHUNK:
                self._next_purge = None  # more are due: the next claim goes on
        claim = await anyio.to_thread.run_sync(
            lambda: service.claim(
                database,
                caller=caller,
                key=key,
                fingerprint=fingerprint,
                now=now,
                expired_before=expired_before,
            )
        )
        if isinstance(claim, service.Replay):
            await _replay(claim, send)
            return
        if isinstance(claim, service.Reused):
            response = problem_response(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "This Idempotency-Key was first sent with a different request.",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "location": "header",
                        "message": "already used for another request",
                        "code": "idempotency_key_reused",
                    }
                ],
            )
            await response(scope, receive, send)
            return
        if isinstance(claim, service.InProgress):
            response = problem_response(
                409,
                "idempotency-in-progress",
                "Request in progress",
                "The first request with this Idempotency-Key is still running; retry later.",
            )
            await response(scope, receive, send)
            return

        await self._run(scope, body, send, claim.record_id, database, state)

    async def _run(
        self, scope: Scope, body: bytes, send: Send, record_id: int, database: Any, state: Any
    ) -> None:
        status = 500
        response_headers: list[list[str]] = []
        chunks: list[bytes] = []
        held: list[Message] = []
        delivered = False

        async def receive_once() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        async def capture(message: Message) -> None:
            # Held back until the response is stored: a client that got its answer and
            # sent the same request again at once would otherwise find the key still in
            # progress (409).
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.extend(
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in _NOT_REPLAYED
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            held.append(message)

        try:
            await self.app(scope, receive_once, capture)
        except BaseException:
            await anyio.to_thread.run_sync(lambda: service.forget(database, record_id=record_id))
            raise
        try:
            await anyio.to_thread.run_sync(
                lambda: service.complete(
                    database,
                    record_id=record_id,
                    status=status,
                    headers=response_headers,
                    body=b"".join(chunks),
                    now=state.clock(),
                )
            )
        except Exception:
            # The work is done and committed: the client gets its answer all the same.
            logger.exception("storing the response for Idempotency-Key replays failed")
        for message in held:
            await send(message)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _replay(replay: service.Replay, send: Send) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in replay.headers]
    headers.append((b"content-length", str(len(replay.body)).encode()))
    headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": replay.status, "headers": headers})
    await send({"type": "http.response.body", "body": replay.body})
