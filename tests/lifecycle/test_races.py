"""Two callers moving one system at once: exactly one wins, in one process or several."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ADMIN_SECRET, auth, project_path
from tests.factories import system_body

RACERS = 16


def race(base_url: str) -> None:
    headers = auth(ADMIN_SECRET)
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        body = system_body(key="racer", tier="minimal")
        assert http.post("/v1/systems", json=body).status_code == 201

    barrier = threading.Barrier(RACERS)
    statuses: list[int] = []
    types: list[str] = []
    lock = threading.Lock()

    def move() -> None:
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            barrier.wait()
            response = http.post(
                "/v1/systems/racer/transitions",
                json={"to_stage": "pilot", "reason": "race", "expected_stage": "proposed"},
            )
        with lock:
            statuses.append(response.status_code)
            if response.status_code == 409:
                types.append(response.json()["type"])

    threads = [threading.Thread(target=move) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert sorted(statuses) == [201] + [409] * (RACERS - 1)
    assert all(kind.endswith("/stage-conflict") for kind in types)
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
        moves = http.get("/v1/systems/racer/transitions").json()["items"]
        events = http.get(
            "/v1/events", params={"system": "racer", "type": "transition.recorded"}
        ).json()["items"]
        stage = http.get("/v1/systems/racer").json()["stage"]
    assert len(moves) == 1
    assert len(events) == 1
    assert stage == "pilot"


def test_sixteen_concurrent_transitions_one_winner(live_server: str) -> None:
    race(live_server)


def test_racers_without_expected_stage_get_a_decision_against_the_new_stage(
    live_server: str,
) -> None:
    headers = auth(ADMIN_SECRET)
    with httpx.Client(base_url=live_server, headers=headers, timeout=60) as http:
        assert (
            http.post("/v1/systems", json=system_body(key="racer", tier="minimal")).status_code
            == 201
        )

    barrier = threading.Barrier(RACERS)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def move() -> None:
        with httpx.Client(base_url=live_server, headers=headers, timeout=60) as http:
            barrier.wait()
            response = http.post(
                "/v1/systems/racer/transitions", json={"to_stage": "pilot", "reason": "race"}
            )
        with lock:
            answers.append((response.status_code, response.json().get("type", "")))

    threads = [threading.Thread(target=move) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(status for status, _ in answers) == [201] + [409] * (RACERS - 1)
    # The losers were judged against the stage the winner left: pilot -> pilot is no move.
    assert all(kind.endswith("/invalid-transition") for status, kind in answers if status == 409)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def two_worker_server(app: FastAPI, database_url: str) -> Iterator[str]:
    """The app as two uvicorn worker processes against the suite's database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "WORKER_THREADS": "8",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=project_path(),
        env=env,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the two-worker server did not start"
            time.sleep(0.2)
        yield base_url
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.slow
def test_sixteen_concurrent_transitions_across_two_worker_processes(
    two_worker_server: str,
) -> None:
    race(two_worker_server)
