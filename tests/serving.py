"""The server as `make run` starts it: the uvicorn command line is read from the Makefile
(`make -n run` prints it without running anything), so these tests run what ships and break
when the Makefile changes it."""

import os
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.main import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_run_command(port: int, log_level: str = "info") -> list[str]:
    """The uvicorn command of `make run`, with PORT and LOG_LEVEL as given."""
    # Not the MAKEFLAGS of a `make test` this may run under: its jobserver is not ours.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "run", f"PORT={port}", f"LOG_LEVEL={log_level}"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = printed.replace("\\\n", " ").splitlines()  # continuation lines joined
    commands = [
        shlex.split(line)
        for line in lines
        if line.strip() and Path(shlex.split(line)[0]).name == "uvicorn"
    ]
    assert len(commands) == 1, printed
    return commands[0]


@dataclass
class Server:
    process: "subprocess.Popen[bytes]"
    base: str
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.output.read_text(errors="replace")


def wait_for_health(base: str, process: "subprocess.Popen[bytes]", output: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            exited = process.returncode
            raise AssertionError(f"the server exited with {exited}:\n{output.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base}/healthz did not answer:\n{output.read_text()}")


@contextmanager
def make_run_server(env: dict[str, str], scratch: Path) -> Iterator[Server]:
    """`make run`'s server on a free port with `env` added to this environment; stopped
    (SIGTERM, as Ctrl-C or a supervisor would) after, so its log is complete."""
    port = free_port()
    with serve(
        make_run_command(port), {**env, "PORT": str(port)}, port, scratch / f"server-{port}.log"
    ) as server:
        yield server


@contextmanager
def serve(command: list[str], env: dict[str, str], port: int, output: Path) -> Iterator[Server]:
    """A server process started with `command` (listening on `port`, with `env` added to
    this environment, its output in `output`), once /healthz answers; stopped with SIGTERM
    after, killed if it does not stop within 30 s."""
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, process, output)
        yield Server(process=process, base=base, output=output)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
