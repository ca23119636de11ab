"""`make bench`: readiness reads and evidence writes, measured against a bare FastAPI floor.

Seeds a fresh SQLite database, serves the app and a bare FastAPI app (bench/bare_app.py) with
one uvicorn worker each, drives each endpoint with wrk and prints requests/s, p50 and p99,
and each endpoint's throughput as a share of the bare endpoint's. Last, it subscribes a
webhook to every event (the bare app receives the deliveries) and measures the evidence
write again, then deletes it and measures once more: delivery is off the request path. Only
ratios taken in the same run mean anything: this machine's speed drifts by up to 2x within
a session. It prints PASS/MISS against the targets but always exits 0 on figures; it fails
only when the setup is broken (the app does not start or answers with errors).

    .venv/bin/python bench/run.py

Environment: BENCH_SECONDS (per endpoint, default 10), BENCH_SYSTEMS (default 1000),
BENCH_SUBSCRIBE (default 1; 0 leaves out the subscribed write).
"""

import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# Run as `python bench/run.py`, only bench/ is on the import path; the seeder uses the app.
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, insert  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.auth.roles import Role  # noqa: E402
from app.auth.service import hash_key, new_secret  # noqa: E402
from app.controls.catalogue import EVIDENCE_CONTROLS  # noqa: E402
from app.models import ApiKey, Evidence, System, SystemLabel  # noqa: E402
from app.policies.document import PolicyRules  # noqa: E402
from app.policies.service import active_policy, default_policy_document  # noqa: E402
from app.readiness.service import reevaluate_all  # noqa: E402
from app.readiness.tiers import derive_tier  # noqa: E402

HOST = "127.0.0.1"
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
SYSTEMS = int(os.environ.get("BENCH_SYSTEMS", "1000"))
# BENCH_SUBSCRIBE=0 leaves out the write with a webhook subscribed (for code without webhooks).
SUBSCRIBE = os.environ.get("BENCH_SUBSCRIBE", "1") != "0"
VERSIONS_PER_CONTROL = 20
CONNECTIONS = 64
# Two wrk threads: the load generator shares this machine's cores with the server.
WRK_THREADS = 2
WARMUP_SECONDS = 2
# Writes queue on SQLite's single writer; wrk's default 2 s would count slow ones as lost.
WRK_TIMEOUT = "10s"
STARTUP_TIMEOUT_S = 30.0
LUA_SCRIPT = BENCH_DIR / "random_paths.lua"

# (impact areas, oversight): a spread over all four risk tiers, so evaluations and stored
# documents have the shapes real portfolios have rather than one shape a thousand times.
PROFILES: tuple[tuple[list[str], str], ...] = (
    (["drafting"], "human_reviews_all"),
    (["customer_service", "records"], "human_reviews_sample"),
    (["operations"], "fully_automated"),
    (["money", "decisions"], "human_reviews_sample"),
    (["safety"], "human_reviews_all"),
)
# Current evidence is mostly met, so the portfolio mixes ready and blocked systems.
CURRENT_STATUSES = ("met",) * 7 + ("partial",) * 2 + ("not_met",)
OLDER_STATUSES = ("met", "partial", "not_met")
# The controls a pipeline key may record evidence for: the default policy lets only an
# approver attest some (`attested_by`), and the benchmark times writes that succeed.
DEFAULT_RULES = PolicyRules.model_validate(default_policy_document())
PIPELINE_CONTROLS = tuple(
    control.value for control in EVIDENCE_CONTROLS if DEFAULT_RULES.attesting_role(control) is None
)
# Evidence rows per executemany: large batches, bounded memory.
EVIDENCE_BATCH_SYSTEMS = 100


@dataclass(frozen=True)
class Endpoint:
    name: str
    mode: str  # BENCH_MODE for random_paths.lua
    credential: str  # which of `Keys` the requests carry
    min_share: float | None = None  # of the bare endpoint's requests/s
    max_p99_ms: float | None = None
    # At least this share of other endpoints' requests/s (by name; their mean if several).
    min_share_of: tuple[tuple[str, ...], float] | None = None


READ = "GET /v1/systems/{key}/readiness"
WRITE = "PUT /v1/systems/{key}/evidence/{control}"
BARE = Endpoint("GET / (bare FastAPI)", "bare", "viewer")
ENDPOINTS = (
    Endpoint(READ, "readiness", "viewer", min_share=0.25, max_p99_ms=100),
    # An OIDC token verified once and remembered must cost no more than an API key.
    Endpoint(
        "  the same with an OIDC token",
        "readiness",
        "oidc_viewer",
        min_share=0.25,
        max_p99_ms=100,
        min_share_of=((READ,), 0.95),
    ),
    Endpoint(WRITE, "evidence", "pipeline", min_share=0.10),
)
# Measured after ENDPOINTS, once a webhook subscription to every event is active, then the
# write again once it is deleted: delivery is off the request path, so the subscribed write
# keeps at least 90% of the rate of the two around it (their mean, as the database grows
# from one run to the next).
SUBSCRIBED = Endpoint(
    "  the same with a webhook subscribed",
    "evidence",
    "pipeline",
    min_share=0.10,
    min_share_of=((WRITE, "  the same once it is deleted"), 0.90),
)
UNSUBSCRIBED = Endpoint("  the same once it is deleted", "evidence", "pipeline", min_share=0.10)


@dataclass(frozen=True)
class Keys:
    viewer: str
    pipeline: str
    admin: str
    oidc_viewer: str = ""


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers, timeouts and socket errors

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


# --- setup -------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing the Debian package", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"could not install wrk ({exc}); install it and rerun") from exc
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("apt-get installed wrk but it is not on PATH")
    return found


def migrate(database_url: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Alembic logs every step at INFO; only a failure is worth showing.
    if finished.returncode != 0:
        raise SystemExit(f"alembic upgrade head failed:\n{finished.stdout}{finished.stderr}")


def system_key(number: int) -> str:
    # random_paths.lua builds the same keys from a random number in 1..SYSTEMS.
    return f"bench-{number:05d}"


def system_rows(count: int, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for number in range(1, count + 1):
        areas, oversight = PROFILES[number % len(PROFILES)]
        decision = derive_tier(areas, oversight)
        labels = {"env": ("prod", "staging", "dev")[number % 3], "cost-centre": f"cc-{number % 7}"}
        created = now - timedelta(days=400)
        # Built through the table model so every column gets the model's own default.
        system = System(
            # Ids are given so evidence rows can refer to them without reading them back.
            id=number,
            key=system_key(number),
            name=f"Bench system {number}",
            purpose="Load for the readiness benchmark.",
            scope="Loopback only.",
            owner_team=f"team-{number % 25}",
            owner_contact="bench@example.com",
            impact_areas=areas,
            oversight=oversight,
            risk_tier=decision.tier.value,
            risk_tier_rule={"rule": decision.rule.value, "detail": decision.detail},
            labels=labels,
            created_at=created,
            updated_at=created,
        )
        rows.append(system.model_dump())
    return rows


def evidence_rows(system_ids: range, rng: random.Random, now: datetime) -> Iterator[dict[str, Any]]:
    # Plain dicts, not Evidence instances: a table model costs ~40 µs to build and dump,
    # which would be most of the seeding time at 280k rows.
    for system_id in system_ids:
        for control in EVIDENCE_CONTROLS:
            # The current version is recent enough for every tier's freshness limit, so the
            # stored readiness stays valid and reads take the app's stored-document path;
            # older versions reach back a week apart.
            current_at = now - timedelta(days=rng.uniform(1, 30))
            for version in range(1, VERSIONS_PER_CONTROL + 1):
                current = version == VERSIONS_PER_CONTROL
                yield {
                    "system_id": system_id,
                    "control": control.value,
                    "version": version,
                    "status": rng.choice(CURRENT_STATUSES if current else OLDER_STATUSES),
                    "summary": f"Benchmark evidence, version {version}.",
                    "uri": None,
                    "expires_at": None,
                    "recorded_at": current_at - timedelta(weeks=VERSIONS_PER_CONTROL - version),
                    "recorded_by": None,
                    "source": "api",
                    "is_current": current,
                }


def seed(engine: Engine, count: int, now: datetime) -> Keys:
    """Bulk inserts straight into the tables (280k evidence rows through HTTP would take
    minutes), then the app's own re-evaluation stores every system's readiness."""
    rng = random.Random(20261126)  # the same portfolio on every run
    keys = Keys(viewer=new_secret(), pipeline=new_secret(), admin=new_secret())
    with engine.begin() as connection:
        systems = system_rows(count, now)
        connection.execute(insert(System), systems)
        connection.execute(
            insert(SystemLabel),
            [
                {"system_id": row["id"], "name": name, "value": value}
                for row in systems
                for name, value in row["labels"].items()
            ],
        )
        for first in range(1, count + 1, EVIDENCE_BATCH_SYSTEMS):
            batch = range(first, min(first + EVIDENCE_BATCH_SYSTEMS, count + 1))
            connection.execute(insert(Evidence), list(evidence_rows(batch, rng, now)))
        connection.execute(
            insert(ApiKey),
            [
                ApiKey(
                    name=f"bench-{role.value}",
                    role=role.value,
                    key_hash=hash_key(secret),
                    key_prefix=secret[:10],
                    created_at=now,
                ).model_dump(exclude={"id"})
                for role, secret in (
                    (Role.viewer, keys.viewer),
                    (Role.pipeline, keys.pipeline),
                    (Role.admin, keys.admin),
                )
            ],
        )
    with Session(engine) as session:
        reevaluate_all(session, policy=active_policy(session), now=now)
        session.commit()
    return keys


# --- serving -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_until_healthy(url: str, server: subprocess.Popen[bytes], poll: float = 0.2) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server behind {url} exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(poll)
    raise SystemExit(f"{url} did not answer within {STARTUP_TIMEOUT_S:.0f} s")


@contextmanager
def serve(
    app: str, env: dict[str, str], log: Path, *extra: str, workers: int = 1, poll: float = 0.2
) -> Iterator[str]:
    """`workers` uvicorn workers on a free loopback port; yields the base URL once /healthz
    answers 200 (asked every `poll` seconds), and stops them after.

    Its output goes to `log`: under load a failing app logs a traceback per request, which
    would bury the figures; `log_summary` condenses it afterwards.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, *extra,
        "--host", HOST, "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop",
        "--http", "app.protocol:BoundedHttpToolsProtocol",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as output:
        server = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://{HOST}:{port}"
    try:
        wait_until_healthy(f"{base}/healthz", server, poll)
        yield base
    finally:
        server.terminate()
        # Requests stuck inside the app can hold a graceful shutdown open; do not wait long.
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def log_summary(log: Path) -> list[str]:
    """The exceptions a server logged, most frequent first, one line each."""
    # A traceback ends in an unindented "package.module.SomeError: message" line.
    ends = Counter(
        line[:160]
        for line in log.read_text(errors="replace").splitlines()
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)
    )
    return [f"{count:>6} x {line}" for line, count in ends.most_common(5)]


def check_answers(base: str, keys: Keys) -> None:
    """One request of each kind must succeed: figures for 401s or 404s would be nonsense."""
    key = system_key(1)
    requests = (
        urllib.request.Request(
            f"{base}/v1/systems/{key}/readiness",
            headers={"Authorization": f"Bearer {keys.viewer}"},
        ),
        urllib.request.Request(
            f"{base}/v1/systems/{key}/evidence/{EVIDENCE_CONTROLS[0].value}",
            method="PUT",
            data=b'{"status":"met","summary":"bench"}',
            headers={
                "Authorization": f"Bearer {keys.pipeline}",
                "Content-Type": "application/json",
            },
        ),
    )
    requests += (
        urllib.request.Request(
            f"{base}/v1/systems/{key}/readiness",
            headers={"Authorization": f"Bearer {keys.oidc_viewer}"},
        ),
    )
    for request in requests:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                json.load(response)
        except urllib.error.HTTPError as exc:
            raise SystemExit(
                f"{request.method} {request.full_url} answered {exc.code}: {exc.read()[:500]!r}"
            ) from exc


class Issuer:
    """An OIDC issuer on loopback: one ES256 key, its JWKS served over HTTP, and a token
    for a dashboard that the app maps to the viewer role."""

    AUDIENCE = "readiness-bench"

    def __init__(self, base: str) -> None:
        self.base = base
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> bytes:
        public = json.loads(jwt.get_algorithm_by_name("ES256").to_jwk(self.key.public_key()))
        return json.dumps({"keys": [{**public, "kid": "bench", "use": "sig"}]}).encode()

    def settings(self) -> dict[str, str]:
        provider = {
            "issuer": self.base,
            "audience": self.AUDIENCE,
            "jwks_uri": f"{self.base}/jwks",
            "rules": [{"claims": {"sub": "dashboard:*"}, "role": "viewer"}],
        }
        return {"READINESS_OIDC_CONFIG": json.dumps([provider])}

    def viewer_token(self) -> str:
        now = datetime.now(UTC)
        claims = {
            "iss": self.base,
            "aud": self.AUDIENCE,
            "sub": "dashboard:grafana",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(hours=2)).timestamp()),
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "bench"})


@contextmanager
def oidc_issuer() -> Iterator[Issuer]:
    port = free_port()
    issuer = Issuer(f"http://{HOST}:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = issuer.jwks()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer((HOST, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        thread.join()


# --- load --------------------------------------------------------------------------------


def run_wrk(
    wrk: str, base: str, endpoint: Endpoint, token: str, seconds: int, systems: int = SYSTEMS
) -> Result:
    env = {
        **os.environ,
        "BENCH_MODE": endpoint.mode,
        "BENCH_SYSTEMS": str(systems),
        "BENCH_TOKEN": token,
        "BENCH_CONTROLS": ",".join(PIPELINE_CONTROLS),
    }
    command = [
        wrk, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s",
        "--timeout", WRK_TIMEOUT, "-s", str(LUA_SCRIPT), f"{base}/",
    ]  # fmt: skip
    # wrk stops itself after -d; the timeout only guards against a hung process.
    finished = subprocess.run(
        command, env=env, capture_output=True, text=True, check=True, timeout=seconds + 60
    )
    lines = [line for line in finished.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if not lines:
        raise SystemExit(f"wrk printed no result:\n{finished.stdout}\n{finished.stderr}")
    raw = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    return Result(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=sum(
            raw[name] for name in ("connect_errors", "read_errors", "write_errors", "status_errors")
        )
        + raw["timeouts"],
    )


def measure(wrk: str, base: str, endpoint: Endpoint, token: str, systems: int = SYSTEMS) -> Result:
    """Requests to the seeded systems' keys, 1..`systems`."""
    print(f"  {endpoint.name}: warm-up {WARMUP_SECONDS} s, then {SECONDS} s", flush=True)
    # Warm-up fills connection pools, the worker threadpool and the database's page cache.
    run_wrk(wrk, base, endpoint, token, WARMUP_SECONDS, systems)
    return run_wrk(wrk, base, endpoint, token, SECONDS, systems)


def subscribe(base: str, admin_token: str, url: str) -> int:
    """A webhook subscription to every event, delivered to `url`; its id."""
    request = urllib.request.Request(
        f"{base}/v1/webhooks",
        method="POST",
        data=json.dumps({"url": url, "description": "bench receiver"}).encode(),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        webhook_id: int = json.loads(response.read())["id"]
        return webhook_id


def unsubscribe(base: str, admin_token: str, webhook_id: int) -> None:
    request = urllib.request.Request(
        f"{base}/v1/webhooks/{webhook_id}",
        method="DELETE",
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


# --- report ------------------------------------------------------------------------------


def verdicts(endpoint: Endpoint, result: Result, bare: Result, by_name: dict[str, Result]) -> str:
    marks = []
    if endpoint.min_share_of is not None:
        others, share = endpoint.min_share_of
        floor = statistics.mean(by_name[other].per_second for other in others)
        met = result.per_second >= share * floor
        of = "the API key's" if others == (READ,) else "the unsubscribed writes'"
        marks.append(f">= {share:.0%} of {of} {'PASS' if met else 'MISS'}")
    if endpoint.min_share is not None:
        met = result.per_second >= endpoint.min_share * bare.per_second
        marks.append(f"share >= {endpoint.min_share:.0%} {'PASS' if met else 'MISS'}")
    if endpoint.max_p99_ms is not None:
        met = result.p99_ms < endpoint.max_p99_ms
        marks.append(f"p99 < {endpoint.max_p99_ms:.0f} ms {'PASS' if met else 'MISS'}")
    return ", ".join(marks)


def report(results: list[tuple[Endpoint, Result]], server_errors: list[str]) -> None:
    bare = results[0][1]
    by_name = {endpoint.name: result for endpoint, result in results}
    header = (
        f"{'endpoint':<42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'errors':>6} {'of bare':>8}  targets"
    )
    print()
    print(header)
    print("-" * len(header))
    for endpoint, result in results:
        marks = verdicts(endpoint, result, bare, by_name)
        print(
            f"{endpoint.name:<42} {result.per_second:>8.0f} {result.p50_ms:>8.1f}"
            f" {result.p99_ms:>8.1f} {result.max_ms:>8.1f} {result.errors:>6}"
            f" {result.per_second / bare.per_second:>8.1%}  {marks}"
        )
    if any(result.errors for _, result in results):
        print("\nerrors > 0: some answers were not 2xx or timed out; those figures flatter.")
    if any(result.requests == 0 for _, result in results):
        print(
            "\n0 req/s: no request completed within the run; requests still open when wrk"
            " stops are neither counted nor reported as timeouts."
        )
    if server_errors:
        print("\nexceptions the app logged:")
        print("\n".join(server_errors))


def main() -> None:
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="readiness-bench-") as scratch:
        database_url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        migrate(database_url)
        started = time.perf_counter()
        engine = create_engine(database_url)
        keys = seed(engine, SYSTEMS, datetime.now(UTC))
        engine.dispose()
        evidence = SYSTEMS * len(EVIDENCE_CONTROLS) * VERSIONS_PER_CONTROL
        print(
            f"seeded {SYSTEMS} systems, {evidence} evidence rows"
            f" ({len(EVIDENCE_CONTROLS)} controls x {VERSIONS_PER_CONTROL} versions)"
            f" and stored readiness in {time.perf_counter() - started:.1f} s",
            flush=True,
        )

        # The receiver of the subscribed write's webhooks is on loopback.
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "READINESS_WEBHOOK_ALLOW_PRIVATE": "true",
        }
        app_log = Path(scratch) / "app.log"
        with (
            oidc_issuer() as issuer,
            serve(
                "bare_app:app", env, Path(scratch) / "bare.log", "--app-dir", str(BENCH_DIR)
            ) as bare_base,
            serve("app.main:app", {**env, **issuer.settings()}, app_log) as app_base,
        ):
            keys = replace(keys, oidc_viewer=issuer.viewer_token())
            check_answers(app_base, keys)
            print(
                f"wrk: {WRK_THREADS} threads, {CONNECTIONS} connections; uvicorn: 1 worker,"
                f" uvloop + httptools; {os.cpu_count()} CPUs",
                flush=True,
            )
            results = [(BARE, measure(wrk, bare_base, BARE, keys.viewer))]
            for endpoint in ENDPOINTS:
                token = getattr(keys, endpoint.credential)
                results.append((endpoint, measure(wrk, app_base, endpoint, token)))
            if SUBSCRIBE:
                # The bare app is the receiver: it answers every delivery at once.
                webhook = subscribe(app_base, keys.admin, f"{bare_base}/deliveries")
                results.append((SUBSCRIBED, measure(wrk, app_base, SUBSCRIBED, keys.pipeline)))
                unsubscribe(app_base, keys.admin, webhook)
                results.append((UNSUBSCRIBED, measure(wrk, app_base, UNSUBSCRIBED, keys.pipeline)))
        server_errors = log_summary(app_log)
    report(results, server_errors)


if __name__ == "__main__":
    main()
