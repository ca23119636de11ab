"""The CLI's HTTP client: bearer token, bounded retries with exponential backoff, and an
`Idempotency-Key` on every POST so that a retried POST is replayed by the service instead of
recorded twice (the service replays it by that key)."""

import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

# Answers that say "not now": the request was not carried out, so sending it again is safe.
RETRY_STATUSES = frozenset({429, 503})
# The service's 409 while the first request with the same Idempotency-Key still runs.
IN_PROGRESS_TYPE = "/problems/idempotency-in-progress"
# Never wait longer than this between two tries, whatever Retry-After asks for.
MAX_WAIT_SECONDS = 30.0


class CliError(Exception):
    """A failure the CLI reports on one line and turns into its exit code."""

    def __init__(self, message: str, exit_code: int, problem: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.problem = problem


class UsageError(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


class Unreachable(CliError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 3)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4  # tries after the first
    base_wait: float = 1.0  # seconds before the first retry; doubled for each next one
    max_wait: float = MAX_WAIT_SECONDS

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first): the service's
        Retry-After when it sent one, else exponential backoff with jitter; capped."""
        if retry_after is not None:
            return min(self.max_wait, max(0.0, retry_after))
        backoff = min(self.max_wait, self.base_wait * 2.0**attempt)
        return backoff / 2 + random.uniform(0, backoff / 2)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def new_idempotency_key() -> str:
    """One per logical command; each of its POSTs adds its own suffix."""
    return f"readiness-cli-{uuid.uuid4()}"


def tool_version() -> str | None:
    """The installed distribution's version (its metadata, so there is one place to bump it);
    None when run from source without installing it."""
    try:
        return version("readiness-cli")
    except PackageNotFoundError:
        return None


def _user_agent() -> str:
    installed = tool_version()
    return f"readiness-cli/{installed}" if installed else "readiness-cli"


def _not_sent(error: httpx.TransportError) -> bool:
    """The request surely never reached the service (so any method may be sent again)."""
    return isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _describe(error: httpx.TransportError) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _is_in_progress(response: httpx.Response) -> bool:
    if response.status_code != 409:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith(IN_PROGRESS_TYPE)


class Client:
    """Requests to one service with one token. `request` returns the final answer of any
    status once no retry is due; it raises Unreachable when the service could not be
    reached, or kept answering 429/503, within the retries."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": _user_agent(),
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        if method == "POST" and idempotency_key is None:
            raise ValueError("every POST carries an Idempotency-Key")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        # A GET, or a POST the service replays by its key, may be sent again even when its
        # answer was lost on the way; other methods only when they were never sent.
        replayable = method == "GET" or idempotency_key is not None
        attempts = self.policy.retries + 1
        last = ""
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                response = self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as error:
                last = _describe(error)
                if not (replayable or _not_sent(error)):
                    raise Unreachable(
                        f"{method} {path}: {last}; the answer was lost, so whether it was"
                        " recorded is unknown"
                    ) from error
            else:
                if response.status_code in RETRY_STATUSES or (
                    idempotency_key is not None and _is_in_progress(response)
                ):
                    last = f"HTTP {response.status_code}"
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                else:
                    return response
            if attempt + 1 < attempts:
                self._sleep(self.policy.wait(attempt, retry_after))
        raise Unreachable(
            f"{self.base_url} did not answer {method} {path} after {attempts} attempt(s): {last}"
        )
