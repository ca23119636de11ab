"""End to end with a real MLflow tracking server: MLflow (in its own virtual environment,
`make mlflow-env`) on a SQLite store, the service as `make run` serves it, a webhook registered
with MlflowClient, and aliases set through MLflow's REST API as any client sets them.

Building `.mlflow-venv` needs a package registry the first time; without one the test is
skipped, unless READINESS_REQUIRE_MLFLOW=1 (CI) makes that a failure."""

import base64
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from app.main import PROJECT_ROOT
from tests.conftest import ADMIN_SECRET, auth
from tests.factories import make_system, meet_every_control
from tests.integrations.mlflow.conftest import SECRET, WEBHOOK
from tests.serving import free_port, make_run_server

MLFLOW_VERSION = "3.17.2"
MLFLOW_BIN = PROJECT_ROOT / ".mlflow-venv" / "bin"
MODEL = "claims-summariser"
# The restarted service's interval: the denied alias must be gone within it.
RECONCILE_SECONDS = 6
T = TypeVar("T")

# MLflow's own settings for a server that calls a webhook on this machine, in a test.
MLFLOW_ENV = {
    # Webhook URLs must be https and resolve to public addresses, unless these say otherwise.
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    # Webhook secrets are stored encrypted; with no key each process would make up its own.
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    # Nothing else of the server is needed: no telemetry, no job runner processes.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}

CREATE_WEBHOOK = """
import sys
from mlflow import MlflowClient

tracking_uri, url, secret = sys.argv[1:]
webhook = MlflowClient(tracking_uri).create_webhook(
    name="readiness-gate", url=url, events=["model_version_alias.created"], secret=secret
)
print(webhook.webhook_id)
"""


def _make_env() -> dict[str, str]:
    # Not the MAKEFLAGS of a `make test` this may run under: its jobserver is not ours.
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


@pytest.fixture(scope="session")
def mlflow_bin() -> Path:
    """`.mlflow-venv/bin`, built by `make mlflow-env` unless it is there at this version."""
    started = time.monotonic()
    try:
        built = subprocess.run(
            ["make", "--no-print-directory", "mlflow-env"],
            cwd=PROJECT_ROOT,
            env=_make_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        failed = built.returncode != 0
        output = built.stdout + built.stderr
    except subprocess.TimeoutExpired as exc:
        failed, output = True, f"timed out after {exc.timeout} s"
    if failed:
        not_built(output)
    print(f"mlflow-env ready in {time.monotonic() - started:.1f} s")
    return MLFLOW_BIN


def not_built(output: str) -> None:
    """Skip (a laptop without a registry), or fail where READINESS_REQUIRE_MLFLOW=1 (CI)."""
    tail = "\n".join(output.strip().splitlines()[-5:])
    reason = (
        f"`make mlflow-env` could not install mlflow=={MLFLOW_VERSION} into .mlflow-venv"
        f" (no package registry reachable?):\n{tail}"
    )
    if os.environ.get("READINESS_REQUIRE_MLFLOW") == "1":
        pytest.fail(f"READINESS_REQUIRE_MLFLOW=1: {reason}")
    pytest.skip(reason)


@pytest.mark.parametrize(
    ("required", "outcome"), [("1", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_without_mlflow_the_end_to_end_test_is_skipped_unless_required(
    monkeypatch: pytest.MonkeyPatch, required: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("READINESS_REQUIRE_MLFLOW", required)
    with pytest.raises(outcome, match=re.escape(f"could not install mlflow=={MLFLOW_VERSION}")):
        not_built("error: Failed to fetch mlflow: Connection refused")


def test_the_version_is_the_one_make_mlflow_env_installs() -> None:
    assert f"MLFLOW_VERSION := {MLFLOW_VERSION}\n" in (PROJECT_ROOT / "Makefile").read_text()


def eventually(check: Callable[[], T | None], *, within: float = 10.0) -> T:
    """The first truthy answer of `check`, polled until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {check.__doc__ or check}")
        time.sleep(0.2)


@contextmanager
def mlflow_server(bin_dir: Path, scratch: Path) -> Iterator[str]:
    """`mlflow server` on a SQLite store in `scratch`, on a free loopback port; stopped with
    its whole process group."""
    port = free_port()
    log = scratch / "mlflow-server.log"
    command = [
        str(bin_dir / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{scratch / 'mlflow.db'}",
        "--artifacts-destination",
        str(scratch / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=scratch,
            env={**os.environ, **MLFLOW_ENV},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Registry:
    """MLflow's model registry through its REST API, as any client calls it."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/api/2.0/mlflow", timeout=30)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == 200, (method, path, response.text)
        return response.json()

    def register(self, model: str) -> str:
        """A registered model with one version, from a run; the version's number."""
        self.call("POST", "/registered-models/create", json={"name": model})
        return self.new_version(model)

    def new_version(self, model: str) -> str:
        """Another version of the model, from a run of its own; its number."""
        run = self.call("POST", "/runs/create", json={"experiment_id": "0"})
        run_id = run["run"]["info"]["run_id"]
        created = self.call(
            "POST",
            "/model-versions/create",
            json={"name": model, "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
        version: str = created["model_version"]["version"]
        return version

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.call(
            "POST",
            "/registered-models/alias",
            json={"name": model, "alias": alias, "version": version},
        )

    def aliased(self, model: str, alias: str) -> str | None:
        response = self.http.get("/registered-models/alias", params={"name": model, "alias": alias})
        if response.status_code == 400 and "not found" in response.json()["message"]:
            return None
        assert response.status_code == 200, response.text
        version: str = response.json()["model_version"]["version"]
        return version

    def told(self, model: str, version: str, verdict: str) -> dict[str, str] | None:
        """The version's tags once the service has set all of a verdict's (one call each:
        the verdict may be there before the rest), else None."""
        tags = self.tags(model, version)
        expected = {"readiness.gate", "readiness.gate_check_id"}
        if tags.get("readiness.gate") != verdict or not expected <= tags.keys():
            return None
        if ("readiness.blocking" in tags) != (verdict == "denied"):
            return None
        return tags

    def tags(self, model: str, version: str) -> dict[str, str]:
        found = self.call("GET", "/model-versions/get", params={"name": model, "version": version})
        return {tag["key"]: tag["value"] for tag in found["model_version"].get("tags", [])}


@pytest.mark.mlflow
@pytest.mark.slow
def test_an_alias_set_in_mlflow_is_gated_by_the_service(
    mlflow_bin: Path, app: FastAPI, database_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    with mlflow_server(mlflow_bin, tmp_path) as mlflow_base:
        env = {
            "DATABASE_URL": database_url,
            "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
            "READINESS_MLFLOW_WEBHOOK_SECRET": SECRET,
            "READINESS_MLFLOW_TRACKING_URI": mlflow_base,
        }
        with (
            make_run_server(env, tmp_path) as service,
            httpx.Client(base_url=service.base, headers=auth(ADMIN_SECRET), timeout=30) as api,
        ):
            print(f"both servers up after {time.monotonic() - started:.1f} s")
            made = subprocess.run(
                [
                    str(mlflow_bin / "python"),
                    "-c",
                    CREATE_WEBHOOK,
                    *(mlflow_base, f"{service.base}{WEBHOOK}", SECRET),
                ],
                env={**os.environ, **MLFLOW_ENV},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert made.returncode == 0, made.stderr
            registry = Registry(mlflow_base)
            version = registry.register(MODEL)
            # Limited tier: production needs twelve controls and a score of 70, no approval.
            make_system(
                api,
                {},
                key="summariser",
                tier="limited",
                external_ref=f"mlflow:models/{MODEL}",
            )

            def events(kind: str) -> list[dict[str, Any]]:
                answer = api.get("/v1/events", params={"type": kind, "system": "summariser"})
                assert answer.status_code == 200, answer.text
                items: list[dict[str, Any]] = answer.json()["items"]
                return items

            # Not ready: the alias is denied, taken back in MLflow, and the version tagged
            # with the verdict, the gate check and what blocked it.
            registry.set_alias(MODEL, "champion", version)
            denied = eventually(lambda: events("integration.mlflow.alias_denied"))
            (checked,) = events("gate.checked")
            assert checked["data"]["allowed"] is False
            assert checked["actor"]["name"] == "mlflow"
            assert checked["data"]["release"] == {
                "version": version,
                "uri": f"models:/{MODEL}/{version}",
            }
            assert denied[0]["data"]["blocking"] == checked["data"]["blocking"]
            tags = eventually(lambda: registry.told(MODEL, version, "denied"))
            assert tags["readiness.gate_check_id"] == str(denied[0]["data"]["gate_check_id"])
            assert tags["readiness.blocking"] == blocking_tag(checked["data"]["blocking"])
            assert "control_missing:" in tags["readiness.blocking"]
            assert registry.aliased(MODEL, "champion") is None
            assert api.get("/v1/systems/summariser").json()["stage"] == "proposed"

            # Ready now: the same alias again moves the system to production.
            meet_every_control(api, {}, key="summariser")
            registry.set_alias(MODEL, "champion", version)
            (moved,) = eventually(lambda: events("transition.recorded"))
            assert (moved["data"]["from_stage"], moved["data"]["to_stage"]) == (
                "proposed",
                "production",
            )
            assert moved["data"]["release"] == {
                "version": version,
                "uri": f"models:/{MODEL}/{version}",
            }
            assert moved["actor"]["name"] == "mlflow"
            eventually(lambda: registry.told(MODEL, version, "allowed"))
            assert registry.aliased(MODEL, "champion") == version
            assert api.get("/v1/systems/summariser").json()["stage"] == "production"

            # A control fails review; a new version comes.
            failed = api.put(
                "/v1/systems/summariser/evidence/data_rules",
                json={"status": "not_met", "summary": "The retention rule was broken"},
            )
            assert failed.status_code == 200, failed.text
            second = registry.new_version(MODEL)

        # The service is stopped while the new version is made champion: no delivery reaches
        # it (the webhook names the stopped one's port). Started again, its reconciliation
        # finds the alias and gates it as the delivery would have.
        registry.set_alias(MODEL, "champion", second)
        assert registry.aliased(MODEL, "champion") == second
        restarted_env = {**env, "READINESS_MLFLOW_RECONCILE_SECONDS": str(RECONCILE_SECONDS)}
        with (
            make_run_server(restarted_env, tmp_path) as service,
            httpx.Client(base_url=service.base, headers=auth(ADMIN_SECRET), timeout=30) as api,
        ):
            restarted = time.monotonic()
            eventually(
                lambda: registry.aliased(MODEL, "champion") is None, within=RECONCILE_SECONDS
            )
            print(f"denied alias gone {time.monotonic() - restarted:.1f} s after the start")
            tags = eventually(lambda: registry.told(MODEL, second, "denied"))
            (denied,) = [
                one
                for one in events_of(api, "integration.mlflow.alias_denied")
                if one["data"]["version"] == second
            ]
            assert denied["data"]["delivery_id"].startswith("reconcile:")
            assert tags["readiness.gate_check_id"] == str(denied["data"]["gate_check_id"])
            assert "control_not_met:data_rules" in tags["readiness.blocking"].split(",")
            assert api.get("/v1/systems/summariser").json()["stage"] == "production"

            # The rounds after it (one at least, in one and a half intervals) find nothing
            # left to gate.
            checks = len(events_of(api, "gate.checked"))
            time.sleep(RECONCILE_SECONDS * 1.5)
            assert len(events_of(api, "gate.checked")) == checks
    print(f"end to end in {time.monotonic() - started:.1f} s")


def events_of(api: httpx.Client, kind: str) -> list[dict[str, Any]]:
    answer = api.get("/v1/events", params={"type": kind, "system": "summariser", "limit": 200})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def blocking_tag(blocking: list[dict[str, Any]]) -> str:
    """`readiness.blocking` as docs/integrations/mlflow.md describes it."""
    codes: list[str] = []
    for item in blocking:
        code = f"{item['code']}:{item['control']}" if item.get("control") else item["code"]
        if code not in codes:
            codes.append(code)
    return ",".join(codes)
