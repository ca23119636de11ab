"""Request headers are bounded (app.protocol): past 16 KiB a request gets 431 or its
connection closed, however long its headers go on, and the server neither grows nor slows
for it. Run against the server `make run` starts, from raw sockets."""

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command

from app.protocol import MAX_HEAD_BYTES
from tests.conftest import ADMIN_SECRET, alembic_config
from tests.serving import Server, make_run_server

HOST = "127.0.0.1"
MB = 1024 * 1024

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    scratch = tmp_path_factory.mktemp("header-limit")
    database_url = f"sqlite:///{scratch / 'readiness.db'}"
    command.upgrade(alembic_config(database_url), "head")
    env = {
        "DATABASE_URL": database_url,
        "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "LOG_LEVEL": "warning",
    }
    with make_run_server(env, scratch) as running:
        yield running


def port_of(server: Server) -> int:
    return int(server.base.rsplit(":", 1)[1])


def get(server: Server, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port_of(server), timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw_exchange(server: Server, request: bytes, *, piece: int | None = None) -> bytes:
    """Sends `request` (in pieces of `piece` bytes, if given) and reads the answer until
    the server closes the connection."""
    with socket.create_connection((HOST, port_of(server)), timeout=10) as sock:
        step = piece or len(request)
        for start in range(0, len(request), step):
            sock.sendall(request[start : start + step])
            if piece:
                time.sleep(0.001)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def request_with(path: str, *headers: tuple[str, str], close: bool = True) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {HOST}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_headers_up_to_the_limit_are_served(server: Server) -> None:
    key = ("Authorization", f"Bearer {ADMIN_SECRET}")
    pad = ("X-Pad", "p" * (MAX_HEAD_BYTES - 1024))
    status, _ = get(server, "/v1/controls", dict([key, pad]))
    assert status == 200
    # Arriving a few bytes at a time, the headers are counted as they come, and still pass.
    answer = raw_exchange(server, request_with("/v1/controls", key, pad), piece=997)
    assert status_of(answer) == 200
    # Several such requests on one connection: the count starts again with each request.
    connection = http.client.HTTPConnection(HOST, port_of(server), timeout=10)
    try:
        for _ in range(3):
            connection.request("GET", "/v1/controls", headers=dict([key, pad]))
            response = connection.getresponse()
            response.read()
            assert response.status == 200
    finally:
        connection.close()


def test_a_large_body_is_no_header(server: Server) -> None:
    body = json.dumps({"key": "big-sys", "name": "n" * (600 * 1024)}).encode()
    head = (
        f"POST /v1/systems HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {ADMIN_SECRET}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    # Sent at once: the server reads the body in the same chunks as the headers.
    assert status_of(raw_exchange(server, head + body)) == 422


@pytest.mark.parametrize(
    "request_bytes",
    [
        request_with("/healthz", ("X-Pad", "p" * (MAX_HEAD_BYTES + 1))),
        request_with("/healthz?" + "q" * (MAX_HEAD_BYTES + 1)),
        request_with("/healthz", *[(f"X-Pad-{n}", "p" * 100) for n in range(200)]),
    ],
    ids=["one long header", "a long URL", "many headers"],
)
def test_headers_just_over_the_limit_get_431(server: Server, request_bytes: bytes) -> None:
    answer = raw_exchange(server, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"content-type: application/problem+json" in head.lower()
    assert b"connection: close" in head.lower()
    problem = json.loads(body)
    assert (problem["type"], problem["status"]) == ("/problems/headers-too-large", 431)


def stream_field(server: Server, start: bytes, size: int) -> str:
    """Sends `start`, then `size` bytes of one field's value and its end, and says what
    became of it: "431", "closed" (before or instead of an answer), or the status line it
    got."""
    piece = b"a" * (64 * 1024)
    with socket.create_connection((HOST, port_of(server)), timeout=20) as sock:
        try:
            sock.sendall(start)
            for _ in range(size // len(piece)):
                sock.sendall(piece)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = sock.recv(4096)
        except ConnectionResetError:
            return "closed"
        except TimeoutError:
            return "no answer"
    if not answer:
        return "closed"
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return "431" if status_line.startswith("HTTP/1.1 431 ") else status_line


def stream_header(server: Server, size: int) -> str:
    """A request whose one header is `size` bytes long."""
    start = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nX-Flood: ".encode()
    return stream_field(server, start, size)


def resident_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def repeatedly(until: float, work: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        while time.monotonic() < until:
            work()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_oversized_headers_neither_grow_nor_slow_the_server(server: Server) -> None:
    for _ in range(20):
        assert get(server, "/healthz", {})[0] == 200
    pid = server.pid
    before = resident_kb(pid, "VmRSS")
    # The peak so far becomes the current size, so VmHWM shows the attack's own peak.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")

    outcomes: list[str] = []
    latencies: list[float] = []
    peaks: list[int] = []
    until = time.monotonic() + 4

    def flood(size: int) -> Callable[[], None]:
        def attempt() -> None:
            outcomes.append(stream_header(server, size))
            time.sleep(0.01)  # the sender's turn on the CPU is not the server's

        return attempt

    def probe() -> None:
        started = time.perf_counter()
        status, _ = get(server, "/healthz", {})
        latencies.append(time.perf_counter() - started)
        assert status == 200
        peaks.append(resident_kb(pid, "VmRSS"))
        time.sleep(0.05)

    attackers = [repeatedly(until, flood(MB)) for _ in range(4)]
    attackers += [repeatedly(until, flood(50 * MB)) for _ in range(2)]
    prober = repeatedly(until, probe)
    for thread in [*attackers, prober]:
        thread.join(120)

    assert outcomes
    assert set(outcomes) <= {"431", "closed"}, sorted(set(outcomes))
    # Every probe well within 100 ms but what this shared machine's scheduler takes now
    # and then: 95% under 100 ms, none near a second (without the bound: seconds).
    latencies.sort()
    assert len(latencies) >= 20
    assert latencies[int(len(latencies) * 0.95) - 1] < 0.1, latencies[-5:]
    assert latencies[-1] < 1.0, latencies[-5:]
    peak = max([*peaks, resident_kb(pid, "VmHWM")])
    assert peak - before < 10 * 1024, (before, peak)
    assert server.process.poll() is None


def stream_trailer(server: Server, size: int) -> str:
    """A chunked request whose body ends at once and whose one trailer field is `size`
    bytes long."""
    head = f"POST /v1/controls HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n"
    return stream_field(server, head.encode() + b"0\r\nX-Flood: ", size)


def test_an_endless_trailer_is_refused_like_an_endless_header(server: Server) -> None:
    pid = server.pid
    before = resident_kb(pid, "VmRSS")
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    outcome = stream_trailer(server, 40 * MB)
    assert outcome in {"431", "closed"}, outcome
    assert resident_kb(pid, "VmHWM") - before < 10 * 1024
    assert get(server, "/healthz", {})[0] == 200


def test_trailer_fields_never_join_the_headers(server: Server) -> None:
    body = b'{"name": "smuggled", "role": "viewer"}'
    request = (
        (
            f"POST /v1/api-keys HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            f"{len(body):x}\r\n"
        ).encode()
        + body
        + f"\r\n0\r\nAuthorization: Bearer {ADMIN_SECRET}\r\n\r\n".encode()
    )
    assert status_of(raw_exchange(server, request)) == 401
    # The same body with the key in the headers is served: only the trailer was ignored.
    keyed = request.replace(
        b"Content-Type:", f"Authorization: Bearer {ADMIN_SECRET}\r\nContent-Type:".encode()
    )
    assert status_of(raw_exchange(server, keyed)) == 201


def test_a_chunked_body_in_small_chunks_is_served(server: Server) -> None:
    body = json.dumps({"name": "chunky", "role": "viewer"}).encode()
    chunks = b"".join(f"{1:x}\r\n".encode() + bytes([byte]) + b"\r\n" for byte in body)
    request = (
        (
            f"POST /v1/api-keys HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_SECRET}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    assert status_of(raw_exchange(server, request, piece=256)) == 201


def test_an_upgrade_to_websocket_is_an_ordinary_request(server: Server) -> None:
    # No WebSocket routes, so no WebSocket handling: the request is answered as HTTP.
    answer = raw_exchange(
        server,
        request_with(
            "/v1/controls",
            ("Authorization", f"Bearer {ADMIN_SECRET}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("X-Pad", "p" * (10 * 1024)),
            close=False,
        ),
    )
    assert status_of(answer) == 200
    assert b"application/json" in answer.split(b"\r\n\r\n", 1)[0].lower()
