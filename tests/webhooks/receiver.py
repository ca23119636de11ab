"""A webhook receiver for tests: a real HTTP server on loopback, in a thread, that records
every request and answers with the statuses a test scripts."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    # Answers in order; once used up, `default`.
    statuses: list[int] = field(default_factory=list)
    default: int = 204
    # Sent with every answer.
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to hold each request before answering, by the request's count (from 0).
    delay: Callable[[int], float] = lambda _count: 0.0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> tuple[int, float]:
        with self.lock:
            count = len(self.requests)
            self.requests.append(request)
            status = self.statuses.pop(0) if self.statuses else self.default
        return status, self.delay(count)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [request.json() for request in self.requests]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.requests)} requests of {count} arrived in {timeout} s")


@contextmanager
def receiver(path: str = "/hook") -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            status, delay = holder["receiver"].answer(received)
            time.sleep(delay)
            self.send_response(status)
            for name, value in holder["receiver"].headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["receiver"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}{path}")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
