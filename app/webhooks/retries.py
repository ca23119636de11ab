"""When a delivery is tried again: pure rules of the answer and the attempt count."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from app.webhooks.outbox import FAILED, PENDING, SUCCEEDED

# A delivery is retried for at least this long after its first failed attempt.
RETRY_WINDOW = timedelta(hours=24)
# The delay after the first failure, doubling with each one up to CAP, of which a random half
# is taken off (jitter), so that receivers coming back are not hit by every retry at once.
BASE = timedelta(seconds=30)
CAP = timedelta(hours=1)
# A Retry-After asking for more than this is not followed further.
MAX_RETRY_AFTER = CAP


class Verdict(StrEnum):
    succeeded = "succeeded"
    retry = "retry"  # network error, timeout, 408, 429, 5xx
    failed = "failed"  # any other answer: sending it again would not change it
    gone = "gone"  # 410: the receiver is gone for good


def verdict(status: int | None) -> Verdict:
    """What an attempt's answer means; None is no answer (connection refused, timeout)."""
    if status is None or status in (408, 429) or status >= 500:
        return Verdict.retry
    if 200 <= status < 300:
        return Verdict.succeeded
    if status == 410:
        return Verdict.gone
    return Verdict.failed


def backoff(attempt: int, jitter: float) -> timedelta:
    """The delay after the `attempt`-th failed attempt (from 1); `jitter` in [0, 1)."""
    full = min(CAP, BASE * (1 << min(attempt - 1, 20)))
    return full / 2 + full / 2 * jitter


def retry_after(value: str | None) -> timedelta | None:
    """A Retry-After in seconds, bounded; None when absent or an HTTP date (not followed)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(timedelta(seconds=int(value.strip())), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class Next:
    """A delivery's state after an attempt."""

    status: str
    next_attempt_at: datetime | None
    retry_until: datetime | None


def after_attempt(
    verdict: Verdict,
    *,
    attempts: int,
    retry_until: datetime | None,
    now: datetime,
    retry_after: timedelta | None,
    jitter: float,
) -> Next:
    """`attempts` counts this one; `retry_until` is None until a first attempt failed."""
    if verdict == Verdict.succeeded:
        return Next(SUCCEEDED, None, retry_until)
    if verdict != Verdict.retry:
        return Next(FAILED, None, retry_until)
    retry_until = retry_until or now + RETRY_WINDOW
    if now >= retry_until:
        return Next(FAILED, None, retry_until)
    delay = backoff(attempts, jitter)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return Next(PENDING, now + delay, retry_until)
