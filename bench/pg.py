"""`make bench-pg`: the API where it runs in production, on PostgreSQL with several workers.

Creates a fresh PostgreSQL database, migrates it and seeds it as `make bench` seeds SQLite
(BENCH_PG_SYSTEMS systems, default 300, 14 evidence controls with 20 versions each), serves
the app with two uvicorn workers beside the bare FastAPI app (bench/bare_app.py) with two,
and drives each with wrk (64 connections): the readiness read, the evidence write and the
gate check (POST .../gate-checks for the production gate). Then it times cold starts: from
launching uvicorn (two workers) on the migrated database to the first 200 from /healthz.
It prints requests/s, p50 and p99, each endpoint's share of the bare endpoint's requests/s,
and PASS/MISS against the targets; it always exits 0 on figures and fails only when the
setup is broken. It drops the database afterwards.

    .venv/bin/python bench/pg.py

Environment: BENCH_PG_URL (server URL without a database, default
postgresql+psycopg://postgres@127.0.0.1:5432), BENCH_SECONDS (per endpoint, default 10),
BENCH_PG_SYSTEMS (default 300), BENCH_PG_WORKERS (default 2), BENCH_COLD_STARTS (default 5).
"""

import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import run as bench  # noqa: E402
from run import BARE, Endpoint, Keys, Result  # noqa: E402
from scale import admin  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")
SYSTEMS = int(os.environ.get("BENCH_PG_SYSTEMS", "300"))
WORKERS = int(os.environ.get("BENCH_PG_WORKERS", "2"))
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "5"))
COLD_START_TARGET_S = 1.0
HEALTH_POLL_S = 0.005

READ = "GET /v1/systems/{key}/readiness"
ENDPOINTS = (
    Endpoint(READ, "readiness", "viewer", min_share=0.25, max_p99_ms=100),
    Endpoint(
        "PUT /v1/systems/{key}/evidence/{control}",
        "evidence",
        "pipeline",
        min_share=0.05,
        max_p99_ms=250,
    ),
    Endpoint("POST /v1/systems/{key}/gate-checks", "gate", "pipeline", min_share=0.10),
)


def check_answers(base: str, keys: Keys) -> None:
    """One request of each kind must succeed: figures for 4xx answers would be nonsense."""
    key = bench.system_key(1)
    control = bench.PIPELINE_CONTROLS[0]
    for method, path, token, body in (
        ("GET", f"/v1/systems/{key}/readiness", keys.viewer, None),
        ("PUT", f"/v1/systems/{key}/evidence/{control}", keys.pipeline, b'{"status":"met"}'),
        ("POST", f"/v1/systems/{key}/gate-checks", keys.pipeline, b'{"target_stage":"pilot"}'),
    ):
        request = urllib.request.Request(
            f"{base}{path}",
            method=method,
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise SystemExit(f"{method} {path} answered {exc.code}: {exc.read()[:500]!r}") from exc


def cold_start(env: dict[str, str], log: Path) -> float:
    """Seconds from launching uvicorn to the first 200 from /healthz."""
    started = time.perf_counter()
    with bench.serve("app.main:app", env, log, workers=WORKERS, poll=HEALTH_POLL_S):
        return time.perf_counter() - started


def main() -> None:
    wrk = bench.ensure_wrk()
    name = f"readiness_bench_pg_{os.getpid()}"
    database_url = f"{PG_URL}/{name}"
    admin(f'DROP DATABASE IF EXISTS "{name}"')
    admin(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory(prefix="readiness-bench-pg-") as scratch:
            results, starts, server_errors = run(wrk, database_url, Path(scratch))
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    bench.report(results, server_errors)
    median = statistics.median(starts)
    verdict = "PASS" if median < COLD_START_TARGET_S else "MISS"
    print(
        f"\ncold start, launch to first /healthz 200 ({WORKERS} workers, {len(starts)} starts):"
        f" median {median:.2f} s, max {max(starts):.2f} s"
        f"  < {COLD_START_TARGET_S:g} s {verdict}"
    )


def run(
    wrk: str, database_url: str, scratch: Path
) -> tuple[list[tuple[Endpoint, Result]], list[float], list[str]]:
    bench.migrate(database_url)
    started = time.perf_counter()
    engine = create_engine(database_url)
    keys = bench.seed(engine, SYSTEMS, datetime.now(UTC))
    engine.dispose()
    print(
        f"seeded {SYSTEMS} systems on PostgreSQL and stored readiness in"
        f" {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    env = {**os.environ, "DATABASE_URL": database_url}
    app_log = scratch / "app.log"
    with (
        bench.serve(
            "bare_app:app", env, scratch / "bare.log", "--app-dir", str(BENCH_DIR), workers=WORKERS
        ) as bare_base,
        bench.serve("app.main:app", env, app_log, workers=WORKERS) as app_base,
    ):
        check_answers(app_base, keys)
        print(
            f"wrk: {bench.WRK_THREADS} threads, {bench.CONNECTIONS} connections; uvicorn:"
            f" {WORKERS} workers, uvloop + httptools; {os.cpu_count()} CPUs",
            flush=True,
        )
        results = [(BARE, bench.measure(wrk, bare_base, BARE, keys.viewer, SYSTEMS))]
        for endpoint in ENDPOINTS:
            token = getattr(keys, endpoint.credential)
            results.append((endpoint, bench.measure(wrk, app_base, endpoint, token, SYSTEMS)))
    print(f"  cold starts: {COLD_STARTS}", flush=True)
    starts = [cold_start(env, scratch / "cold.log") for _ in range(COLD_STARTS)]
    return results, starts, bench.log_summary(app_log)


if __name__ == "__main__":
    main()
