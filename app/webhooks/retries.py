"""When a delivery is tried again: pure rules of the answer and the attempt count."""

from datetime import timedelta
from enum import StrEnum

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
