"""The retry rules, as plain functions of the answer, the attempt count and the time."""

from datetime import timedelta

import pytest

from app.webhooks import retries
from app.webhooks.retries import Verdict, after_attempt, backoff, verdict
from tests.conftest import START


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.succeeded),
        (202, Verdict.succeeded),
        (204, Verdict.succeeded),
        (None, Verdict.retry),
        (408, Verdict.retry),
        (429, Verdict.retry),
        (500, Verdict.retry),
        (503, Verdict.retry),
        (599, Verdict.retry),
        (410, Verdict.gone),
        (301, Verdict.failed),
        (400, Verdict.failed),
        (401, Verdict.failed),
        (404, Verdict.failed),
        (413, Verdict.failed),
    ],
)
def test_what_an_answer_means(status: int | None, expected: Verdict) -> None:
    assert verdict(status) == expected


def test_delays_double_up_to_an_hour_with_jitter_taking_off_up_to_half() -> None:
    for attempt in range(1, 40):
        full = min(retries.CAP, retries.BASE * 2 ** (attempt - 1))
        assert backoff(attempt, 0.0) == full / 2
        assert full / 2 <= backoff(attempt, 0.5) < full
        assert backoff(attempt, 0.999999) < full
    assert backoff(1, 0.0) == timedelta(seconds=15)
    assert backoff(30, 0.0) == timedelta(minutes=30)


def test_a_delivery_is_retried_for_a_day_after_its_first_failure() -> None:
    first = after_attempt(
        Verdict.retry, attempts=1, retry_until=None, now=START, retry_after=None, jitter=0.0
    )
    assert first.status == "pending"
    assert first.retry_until == START + timedelta(hours=24)
    assert first.next_attempt_at == START + timedelta(seconds=15)
    late = START + timedelta(hours=24)
    last = after_attempt(
        Verdict.retry,
        attempts=30,
        retry_until=first.retry_until,
        now=late,
        retry_after=None,
        jitter=0.0,
    )
    assert (last.status, last.next_attempt_at) == ("failed", None)


def test_retry_after_lengthens_the_delay_up_to_an_hour() -> None:
    step = after_attempt(
        Verdict.retry,
        attempts=1,
        retry_until=None,
        now=START,
        retry_after=retries.retry_after("7200"),
        jitter=0.0,
    )
    assert step.next_attempt_at == START + timedelta(hours=1)
    assert retries.retry_after("Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert retries.retry_after(None) is None
    assert retries.retry_after(" 5 ") == timedelta(seconds=5)


@pytest.mark.parametrize("final", [Verdict.succeeded, Verdict.failed, Verdict.gone])
def test_other_verdicts_end_it(final: Verdict) -> None:
    step = after_attempt(final, attempts=1, retry_until=None, now=START, retry_after=None, jitter=0)
    assert step.status == ("succeeded" if final == Verdict.succeeded else "failed")
    assert step.next_attempt_at is None
