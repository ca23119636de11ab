"""The dispatcher: a thread in every worker process that claims due deliveries from the outbox,
sends them, and records each attempt.

Claims make several processes and replicas share the work without sending a delivery twice:
on PostgreSQL the due rows are locked with FOR UPDATE SKIP LOCKED while they are marked
claimed; on SQLite the claim is a write transaction, and those of all processes on the host
take turns (BEGIN IMMEDIATE). A claim is a lease: a process that dies while sending leaves
its deliveries to whoever claims them once the lease has expired.

Order per system: a delivery is not claimed while an earlier one of the same subscription
and system is still pending, so a receiver that was down gets a system's events in order.
"""

import asyncio
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import col

from app.background import BackgroundThread
from app.clock import system_clock
from app.config import Settings
from app.db import Database, read_transaction, write_transaction
from app.models import Event, WebhookDelivery, WebhookSubscription
from app.outage import reason
from app.webhooks import envelope, retries, ssrf
from app.webhooks import service as webhooks_service
from app.webhooks.outbox import FAILED, PENDING

if TYPE_CHECKING:
    # Imported when something is sent: start-up does without it
    # (tests/health/test_start_up.py).
    import httpx

logger = logging.getLogger("app.webhooks")

# Deliveries claimed at a time, at most: each round costs two write transactions (claim,
# record) whatever its size, which on SQLite writers of the same process wait for. They are
# sent SENDERS side by side.
BATCH = 128
SENDERS = 8
# While its process answers requests, the dispatcher pauses after a round that sent
# something, at least BUSY_PAUSE_S and four times the round's own time: it then takes at
# most a fifth of the process's time, and the requests (whose writes make the events) keep
# the rest. Sending competes with them for the GIL: in `make bench` rounds back to back cost
# a steady stream of evidence writes half its rate, paced to a third 12 to 17%, to a fifth
# 4 to 5%. Without requests it sends at full speed.
BUSY_PAUSE_S = 0.05
PAUSE_PER_BUSY = 4.0
MAX_ERROR_LENGTH = 500
USER_AGENT = "Readiness-Webhooks/1"

_earlier = aliased(WebhookDelivery)
_WAITS_FOR_EARLIER = exists().where(
    col(_earlier.subscription_id) == col(WebhookDelivery.subscription_id),
    col(_earlier.ordering_key) == col(WebhookDelivery.ordering_key),
    col(_earlier.status) == PENDING,
    col(_earlier.id) < col(WebhookDelivery.id),
)


def _claimable(now: datetime, limit: int) -> Any:
    """Due, unclaimed, of an active subscription, and first in line for its system."""
    return (
        select(col(WebhookDelivery.id))
        .join(
            WebhookSubscription,
            col(WebhookSubscription.id) == col(WebhookDelivery.subscription_id),
        )
        .where(
            col(WebhookDelivery.status) == PENDING,
            col(WebhookDelivery.next_attempt_at) <= now,
            or_(
                col(WebhookDelivery.claimed_until).is_(None),
                col(WebhookDelivery.claimed_until) <= now,
            ),
            col(WebhookSubscription.disabled_at).is_(None),
            ~_WAITS_FOR_EARLIER,
        )
        .order_by(col(WebhookDelivery.id))
        .limit(limit)
    )


@dataclass(frozen=True)
class Claimed:
    delivery: WebhookDelivery
    url: str
    secret: str
    event: Event
    token: str


@dataclass(frozen=True)
class Attempt:
    claimed: Claimed
    status: int | None
    error: str | None = None
    # The address was refused: not tried, and not tried again.
    refused: bool = False
    retry_after: timedelta | None = None


def claim(
    database: Database, *, now: datetime, lease: timedelta, limit: int = BATCH
) -> list[Claimed]:
    """Claims up to `limit` due deliveries until `now + lease`."""
    token = uuid.uuid4().hex
    with write_transaction(database) as session:
        # PostgreSQL: rows another process is claiming are passed over, not waited for.
        # SQLite has no such clause (SQLAlchemy leaves it out): its claims take turns.
        claimable = _claimable(now, limit).with_for_update(skip_locked=True, of=WebhookDelivery)
        ids = list(session.execute(claimable).scalars())
        if not ids:
            return []
        session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id).in_(ids),
                or_(
                    col(WebhookDelivery.claimed_until).is_(None),
                    col(WebhookDelivery.claimed_until) <= now,
                ),
            )
            .values(claimed_until=now + lease, claim_token=token)
        )
        rows = session.execute(
            select(
                WebhookDelivery,
                col(WebhookSubscription.url),
                col(WebhookSubscription.secret),
                Event,
            )
            .join(
                WebhookSubscription,
                col(WebhookSubscription.id) == col(WebhookDelivery.subscription_id),
            )
            .join(Event, col(Event.id) == col(WebhookDelivery.event_id))
            .where(col(WebhookDelivery.claim_token) == token)
            .order_by(col(WebhookDelivery.id))
        ).all()
    return [Claimed(delivery, url, secret, event, token) for delivery, url, secret, event in rows]


_RECORD_ATTEMPT = (
    update(WebhookDelivery)
    .where(
        col(WebhookDelivery.id) == bindparam("delivery_id"),
        col(WebhookDelivery.claim_token) == bindparam("token"),
    )
    .values(
        attempt=bindparam("new_attempt"),
        status=bindparam("new_status"),
        response_status=bindparam("new_response_status"),
        last_error=bindparam("new_last_error"),
        last_attempt_at=bindparam("new_last_attempt_at"),
        next_attempt_at=bindparam("new_next_attempt_at"),
        retry_until=bindparam("new_retry_until"),
        claimed_until=None,
        claim_token=None,
    )
)


def record(database: Database, attempts: list[Attempt], *, now: datetime) -> None:
    """Stores each attempt's outcome, and lets go of the claims: one statement for all."""
    outcomes = []
    gone: set[int] = set()
    with write_transaction(database) as session:
        for attempt in attempts:
            delivery = attempt.claimed.delivery
            verdict = retries.Verdict.failed if attempt.refused else retries.verdict(attempt.status)
            count = delivery.attempt + 1
            after = retries.after_attempt(
                verdict,
                attempts=count,
                retry_until=delivery.retry_until,
                now=now,
                retry_after=attempt.retry_after,
                jitter=random.random(),
            )
            outcomes.append(
                {
                    "delivery_id": delivery.id,
                    "token": attempt.claimed.token,
                    "new_attempt": count,
                    "new_status": after.status,
                    "new_response_status": attempt.status,
                    "new_last_error": (attempt.error or None) and attempt.error[:MAX_ERROR_LENGTH],
                    "new_last_attempt_at": now,
                    "new_next_attempt_at": after.next_attempt_at,
                    "new_retry_until": after.retry_until,
                }
            )
            if verdict == retries.Verdict.gone:
                gone.add(delivery.subscription_id)
            if after.status == FAILED:
                logger.warning(
                    "webhook delivery %s to subscription %s failed after %s attempts: %s",
                    delivery.id,
                    delivery.subscription_id,
                    count,
                    attempt.error or f"HTTP {attempt.status}",
                )
        if outcomes:
            session.connection().execute(_RECORD_ATTEMPT, outcomes)
        for subscription_id in sorted(gone):
            webhooks_service.disable_subscription(session, subscription_id=subscription_id, now=now)


def anything_due(database: Database, *, now: datetime) -> bool:
    # A read first, so that a dispatcher with nothing to claim (idle, or every due delivery
    # waiting for an earlier one of its system) never takes SQLite's write lock.
    with read_transaction(database) as session:
        return session.execute(_claimable(now, 1)).first() is not None


class WebhookDispatcher(BackgroundThread):
    def __init__(
        self,
        database: Database,
        *,
        settings: Settings,
        clock: Callable[[], datetime],
        # The time written into signatures: receivers compare it with their own clocks.
        wall_clock: Callable[[], datetime] = system_clock,
        # A mark that moves while the process answers requests (app.metrics.http.answered).
        requests_answered: Callable[[], int] = lambda: 0,
    ) -> None:
        super().__init__(
            "webhook-dispatcher", stop_timeout=settings.readiness_webhook_timeout_seconds + 5
        )
        self._database = database
        self._settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self._requests_answered = requests_answered
        # The loop the sends run on, and its client; made by the first round that sends,
        # closed by `stop`.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx.AsyncClient | None = None

    def needed(self) -> bool:
        return self._settings.readiness_webhook_dispatch

    def run(self, stop: threading.Event) -> None:
        failing = False
        while not stop.is_set():
            started, answered = time.perf_counter(), self._requests_answered()
            try:
                sent = self.run_once()
            except Exception as exc:
                if not failing:  # once, not on every poll while the database is away
                    logger.warning("webhook dispatcher: %s; trying again", reason(exc))
                failing = True
                sent = 0
            else:
                failing = False
            if sent and self._requests_answered() != answered:
                busy = time.perf_counter() - started
                stop.wait(max(BUSY_PAUSE_S, PAUSE_PER_BUSY * busy))
            elif not sent:
                stop.wait(self._settings.readiness_webhook_poll_seconds)

    def stop(self) -> None:
        super().stop()
        loop, self._loop = self._loop, None
        client, self._client = self._client, None
        if loop is None:
            return

        def close() -> None:
            if client is not None:
                loop.run_until_complete(client.aclose())
            loop.close()

        # On a thread of its own: `stop` is called from the app's shutdown, on the app's
        # event loop, where another loop cannot run.
        closer = threading.Thread(target=close, name="webhook-dispatcher-close")
        closer.start()
        closer.join()

    def run_once(self) -> int:
        """Sends the deliveries due now, a batch at most; how many it sent."""
        now = self._clock()
        if not anything_due(self._database, now=now):
            return 0
        lease = timedelta(seconds=self._settings.readiness_webhook_lease_seconds)
        claimed = claim(self._database, now=now, lease=lease, limit=self._batch())
        if not claimed:
            return 0
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        attempts = self._loop.run_until_complete(self._send_all(claimed))
        record(self._database, attempts, now=self._clock())
        return len(claimed)

    def _batch(self) -> int:
        """As many as can be sent before the lease runs out, each taking the timeout (one
        timeout of the lease kept for resolving names and recording): a claim must not
        expire while its process is still sending."""
        settings = self._settings
        rounds = (
            settings.readiness_webhook_lease_seconds // settings.readiness_webhook_timeout_seconds
        )
        return min(BATCH, SENDERS * max(1, int(rounds) - 1))

    async def _send_all(self, claimed: list[Claimed]) -> list[Attempt]:
        senders = asyncio.Semaphore(SENDERS)

        async def send(one: Claimed) -> Attempt:
            async with senders:
                return await self._send(one)

        return list(await asyncio.gather(*(send(one) for one in claimed)))

    def _http(self) -> "httpx.AsyncClient":
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self._settings.readiness_webhook_timeout_seconds),
                follow_redirects=False,
                # No proxies from the environment: the address checked is the one used.
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
                limits=httpx.Limits(max_connections=SENDERS),
            )
        return self._client

    async def _send(self, claimed: Claimed) -> Attempt:
        try:
            return await self._try(claimed)
        except Exception as exc:
            # Whatever failed (the network mostly), the attempt is recorded and retried:
            # a delivery is never left claimed by an error.
            return Attempt(claimed, None, f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def _try(self, claimed: Claimed) -> Attempt:
        import httpx

        body = envelope.cloudevent(claimed.event, source=self._settings.readiness_webhook_source)
        headers = {
            "Content-Type": envelope.CONTENT_TYPE,
            **envelope.signature_headers(
                secret=claimed.secret,
                message_id=envelope.webhook_id(claimed.delivery.id or 0),
                body=body,
                sent_at=self._wall_clock(),
            ),
        }
        url = httpx.URL(claimed.url)
        extensions: dict[str, Any] = {}
        if not self._settings.readiness_webhook_allow_private:
            try:
                # Resolving a name blocks: on a thread of its own, not on the sends' loop.
                addresses = await asyncio.to_thread(
                    ssrf.public_addresses, url.host, url.port or _default_port(url)
                )
            except ssrf.UnsafeAddress as exc:
                return Attempt(claimed, None, f"not sent: {exc}", refused=True)
            # Connect to the address just checked, not to whatever the name resolves to a
            # moment later; the name still goes in Host and in TLS (SNI, the certificate).
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.host
            url = url.copy_with(host=str(addresses[0]))
        async with self._http().stream(
            "POST", url, content=body, headers=headers, extensions=extensions
        ) as response:
            # The body is never read: only the status counts.
            return Attempt(
                claimed,
                response.status_code,
                retry_after=retries.retry_after(response.headers.get("Retry-After")),
            )


def _default_port(url: "httpx.URL") -> int:
    return 443 if url.scheme == "https" else 80
