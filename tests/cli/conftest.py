"""The installed `readiness` console script, run as a subprocess against a real server of the
app (the `live_server` fixture: uvicorn on a free loopback port, SQLite or PostgreSQL as the
suite runs), as a pipeline would run it."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from app.controls.catalogue import EVIDENCE_CONTROLS
from tests.conftest import ADMIN_SECRET, auth
from tests.factories import system_body
from tests.serving import free_port

# The console script `make install` (uv sync) puts beside this interpreter.
READINESS = Path(sys.prefix) / "bin" / "readiness"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Service:
    """The live server and one key of each role, made through the API."""

    url: str
    tokens: dict[str, str] = field(default_factory=dict)

    def http(self, role: str = "admin") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=auth(self.tokens[role]), timeout=60)

    def make_system(self, key: str, tier: str = "minimal") -> None:
        with self.http() as http:
            response = http.post("/v1/systems", json=system_body(key=key, tier=tier))
        assert response.status_code == 201, response.text

    def make_production_ready(self, key: str) -> None:
        """A limited-tier system every control of which is met and whose tier a person
        confirmed: its production gate passes with no approval and no pilot, for every
        release."""
        self.make_system(key, tier="limited")
        with self.http() as http:
            confirmed = http.post(f"/v1/systems/{key}/classification", json={"tier": "limited"})
            assert confirmed.status_code == 201, confirmed.text
            for control in EVIDENCE_CONTROLS:
                response = http.put(
                    f"/v1/systems/{key}/evidence/{control}",
                    json={"status": "met", "summary": "by the test"},
                )
                assert response.status_code == 200, response.text

    def move(self, key: str, to: str, release: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"to_stage": to, "reason": "by the test"}
        if release is not None:
            body["release"] = {"version": release, "uri": f"models:/{key}/{release}"}
        with self.http() as http:
            response = http.post(f"/v1/systems/{key}/transitions", json=body)
        assert response.status_code == 201, response.text
        moved: dict[str, Any] = response.json()
        return moved

    def get(self, path: str, **params: Any) -> Any:
        with self.http() as http:
            response = http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, key: str, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("/v1/events", system=key, type=kind)["items"]
        return items


@pytest.fixture
def service(live_server: str) -> Service:
    service = Service(url=live_server, tokens={"admin": ADMIN_SECRET})
    with service.http() as http:
        for role in ("viewer", "pipeline", "approver"):
            response = http.post("/v1/api-keys", json={"name": f"cli-{role}", "role": role})
            assert response.status_code == 201, response.text
            service.tokens[role] = response.json()["key"]
    return service


CliRunner = Callable[..., Run]


def registry_reachable() -> bool:
    """Whether pip's package index answers: the tests that install the tool into a fresh
    environment need it, and are skipped on a machine without one."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        httpx.head(index, timeout=10, follow_redirects=True)
    except httpx.TransportError:
        return False
    return True


def base_env(tmp_path: Path) -> dict[str, str]:
    """This environment without any READINESS_ or GITHUB_ setting of the machine running the
    tests; quick retries, so the tests of exit 3 take a moment."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("READINESS_", "GITHUB_", "COLUMNS"))
    }
    env.update({"READINESS_RETRY_WAIT": "0.01", "HOME": str(tmp_path)})
    return env


def run_readiness(
    *args: str, env: dict[str, str], stdin: str | None = None, secrets: tuple[str, ...] = ()
) -> Run:
    assert READINESS.exists(), f"{READINESS} is missing: run make install"
    done = subprocess.run(
        [str(READINESS), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    run = Run(done.returncode, done.stdout, done.stderr)
    # Whatever happened, no traceback and no token in what the tool printed.
    assert "Traceback" not in run.stderr, run.stderr
    for secret in secrets:
        assert secret not in run.stdout + run.stderr
    return run


@pytest.fixture
def cli(service: Service, tmp_path: Path) -> CliRunner:
    """`cli(*args, role="pipeline", url=None, **env)`: the installed console script with
    READINESS_URL (the live server unless `url` is given) and a token of `role`."""

    def invoke(*args: str, role: str = "pipeline", url: str | None = None, **extra: str) -> Run:
        env = base_env(tmp_path)
        env["READINESS_URL"] = url or service.url
        env["READINESS_TOKEN"] = service.tokens.get(role, role)
        stdin = extra.pop("stdin", None)
        env.update(extra)
        return run_readiness(
            *args, env=env, stdin=stdin, secrets=(env["READINESS_TOKEN"], ADMIN_SECRET)
        )

    return invoke


# A token for runs that never reach a service.
OFFLINE_TOKEN = "rdy_offline_token_never_shown"


@pytest.fixture
def offline(tmp_path: Path) -> CliRunner:
    """`offline(*args, **env)`: the console script pointed at a port where nothing listens,
    with no retries, so a run that sent anything would exit 3; `env` may drop a setting
    (None) or replace it."""

    def invoke(*args: str, stdin: str | None = None, **changes: str | None) -> Run:
        env = base_env(tmp_path)
        env.update(
            {
                "READINESS_URL": f"http://127.0.0.1:{free_port()}",
                "READINESS_TOKEN": OFFLINE_TOKEN,
                "READINESS_RETRIES": "0",
            }
        )
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return run_readiness(*args, env=env, stdin=stdin, secrets=(OFFLINE_TOKEN,))

    return invoke


@dataclass
class Proxy:
    """A pytest-httpserver in front of the live server: it forwards every request as it came
    and keeps what it saw; `rewrites` change the path and query it forwards, and `hooks` let a
    test act after one forward or replace its answer."""

    server: HTTPServer
    upstream: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    hooks: list[Callable[[Request, httpx.Response | None], Response | None]] = field(
        default_factory=list
    )
    rewrites: list[Callable[[str], str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url_for("").rstrip("/")

    def forward(self, request: Request) -> Response:
        self.seen.append((request.method, request.path, dict(request.headers)))
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in ("host", "content-length", "connection")
        }
        target = request.full_path.rstrip("?")
        for rewrite in self.rewrites:
            target = rewrite(target)
        with httpx.Client(base_url=self.upstream, timeout=60) as http:
            answer = http.request(
                request.method,
                target,
                content=request.get_data(),
                headers=headers,
            )
        for hook in self.hooks:
            replaced = hook(request, answer)
            if replaced is not None:
                return replaced
        return Response(
            answer.content,
            status=answer.status_code,
            content_type=answer.headers.get("content-type"),
        )


@pytest.fixture
def proxy(httpserver: HTTPServer, service: Service) -> Iterator[Proxy]:
    proxy = Proxy(server=httpserver, upstream=service.url)
    httpserver.expect_request(re.compile(".*")).respond_with_handler(proxy.forward)
    yield proxy
    httpserver.clear()
