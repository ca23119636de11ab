"""Request counts and latencies, by route template, method and status.

Counted in the process that answered. With several worker processes, set
`PROMETHEUS_MULTIPROC_DIR` to a directory that is empty when the service starts (an
`emptyDir` in Kubernetes): each process then writes its counts there, and a scrape of any
worker sums them all (prometheus-client's multiprocess mode).
"""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# A registry of our own, so nothing else registered in the process leaks into a scrape.
_registry = CollectorRegistry()
_requests = Counter(
    "readiness_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=_registry,
)
_latency = Histogram(
    "readiness_http_request_duration_seconds",
    "Time from request to the end of the response, by route template and method.",
    ["route", "method"],
    # From a cached readiness read (about a millisecond) to a slow report or write.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=_registry,
)


# Requests this process has answered: the webhook dispatcher paces itself while it grows.
_answered = 0


def observe(*, route: str, method: str, status: int, seconds: float) -> None:
    global _answered
    _answered += 1
    _requests.labels(route, method, str(status)).inc()
    _latency.labels(route, method).observe(seconds)


def answered() -> int:
    """How many requests this process has answered (a moving mark, not an exact count:
    answers in other threads may add to it at the same moment)."""
    return _answered


def exposition() -> str:
    """The request metrics in Prometheus text format, summed over every worker process."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
        return generate_latest(registry).decode()
    return generate_latest(_registry).decode()
