"""SIGTERM lets in-flight requests finish: the image's own serving command and environment
(several worker processes, multiprocess metrics), a migrated SQLite database, and a request
whose body is still arriving when the signal comes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy.dockerfile import PROJECT_ROOT, Dockerfile

SECRET = "rdy_graceful_shutdown_admin_0123456789"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serving_command(dockerfile: Dockerfile, port: int) -> list[str]:
    """The image's CMD, bound to loopback on a free port."""
    cmd = list(dockerfile.cmd)
    assert cmd[0] == "uvicorn"
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    return [sys.executable, "-m", *cmd]


def wait_for(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path, dockerfile: Dockerfile) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    image_env = {name: value for name, value in dockerfile.env.items() if name != "PATH"}
    env = {
        **os.environ,
        **image_env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'readiness.db'}",
        "READINESS_BOOTSTRAP_ADMIN_KEY": SECRET,
        "LOG_LEVEL": "info",
    }
    workers = int(env["WEB_CONCURRENCY"])
    assert workers >= 2, "the image should serve with several worker processes"
    # Migrations are a separate command, as in the image.
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            serving_command(dockerfile, port),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: log.read_text().count("Application startup complete") >= workers,
            seconds=60,
            what=f"{workers} workers to start",
        )
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        print(log.read_text())  # shown by pytest when the test fails


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Reads until the server closes the connection, as it must once it is shutting down."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def test_sigterm_lets_an_in_flight_request_finish(
    server: tuple[subprocess.Popen[bytes], int], dockerfile: Dockerfile
) -> None:
    process, port = server
    grace = int(dockerfile.option("--timeout-graceful-shutdown"))
    body = json.dumps({"name": "created-during-shutdown", "role": "viewer"}).encode()
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    with connection:
        connection.sendall(
            b"POST /v1/api-keys HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\n"
            + f"Authorization: Bearer {SECRET}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            # uvicorn answers 100 Continue when the app first asks for the body: from then
            # on the request is in the app's hands, not in a socket buffer.
            + b"Expect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += connection.recv(1)
        assert interim.startswith(b"HTTP/1.1 100"), interim

        half = len(body) // 2
        connection.sendall(body[:half])
        process.send_signal(signal.SIGTERM)
        # The server is shutting down with the request half-received; it must wait for it.
        time.sleep(1.5)
        assert process.poll() is None, "the server exited with a request in flight"
        connection.sendall(body[half:])

        status, headers, answer = read_response(connection)

    assert status == 201, answer
    assert json.loads(answer)["name"] == "created-during-shutdown"
    assert headers.get("connection") == "close"
    assert process.wait(timeout=grace + 10) == 0
