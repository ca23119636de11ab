"""`make bench-scale` (or `BENCH_SCALE=1 make bench`): the dashboard reads at portfolio scale.

For each size (10,000 and 100,000 systems by default) it creates a fresh PostgreSQL
database, migrates it, seeds the portfolio straight into the tables with COPY, stores every
system's readiness through the app's own evaluation, serves the app with one uvicorn worker
and times GET /v1/reports/portfolio, /v1/reports/gaps, /v1/reports/drift (first page), the
/metrics scrape and the /metrics/systems scrape (with a viewer key): a few warm-up calls,
then the median and max of sequential calls. It drops the database afterwards and prints
both sizes, the ratio of the largest to the smallest, and PASS/MISS against the targets
(each call under 500 ms at 100,000 systems, and under 2x of the same call at 10,000;
/metrics/systems, one line per system and gate, has no 2x target; the mirror's first look
at 100,000 systems under 10 s, with calls answered while it runs). It always exits
0 on figures; it fails only when the setup is broken.

    .venv/bin/python bench/scale.py

The portfolio: 17 controls per system (purpose, owner and scope from system fields, the 14
evidence controls with BENCH_SCALE_VERSIONS versions each, default 3), mixed statuses, every
risk tier, systems in each stage with their transitions (a few overridden), approvals,
running pilots (some past their planned end), concluded pilots with results and findings,
evidence that expired before the evaluation (stored as stale, so production systems drift)
and, for BENCH_SCALE_STALE of the systems (default 1%), evidence that expired after it:
readiness is evaluated as of an hour ago, so those stored answers are stale when the app
serves and the reports must judge them afresh, as in a service where time passes between
writes.

Environment: BENCH_PG_URL (server URL without a database, default
postgresql+psycopg://postgres@127.0.0.1:5432), BENCH_SCALE_SIZES (default 10000,100000),
BENCH_SCALE_CALLS (timed calls per endpoint, default 10), BENCH_SCALE_VERSIONS,
BENCH_SCALE_STALE, BENCH_SCALE_KEEP=1 (keep the databases, to profile them afterwards).
"""

import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH_DIR))

import psycopg  # noqa: E402
from run import log_summary, migrate, serve  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session, col, func, select  # noqa: E402

from app.auth.roles import Role  # noqa: E402
from app.auth.service import hash_key, new_secret  # noqa: E402
from app.controls.catalogue import EVIDENCE_CONTROLS  # noqa: E402
from app.lifecycle.stages import GateStage  # noqa: E402
from app.models import System  # noqa: E402
from app.policies import service as policy_service  # noqa: E402
from app.readiness import inputs as readiness_inputs  # noqa: E402
from app.readiness import service as readiness_service  # noqa: E402
from app.readiness.tiers import derive_tier  # noqa: E402

HOST = "127.0.0.1"
PG_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432").rstrip("/")
SIZES = [int(size) for size in os.environ.get("BENCH_SCALE_SIZES", "10000,100000").split(",")]
CALLS = int(os.environ.get("BENCH_SCALE_CALLS", "10"))
WARMUP_CALLS = 3
MIRROR_TIMEOUT = 600  # seconds for the app's background build of its readiness mirror
VERSIONS = max(3, int(os.environ.get("BENCH_SCALE_VERSIONS", "3")))
STALE_SHARE = float(os.environ.get("BENCH_SCALE_STALE", "0.01"))
KEEP = os.environ.get("BENCH_SCALE_KEEP") == "1"
# Readiness is stored as of this long before the app serves: evidence that expires in
# between makes those stored answers stale without any write.
EVALUATION_LAG = timedelta(hours=1)
EVALUATE_BATCH = 1000
TARGET_MS = 500.0
TARGET_GROWTH = 2.0
# The mirror's first look, on a background thread while the app answers from its queries.
MIRROR_TARGET_SIZE = 100_000
MIRROR_TARGET_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    role: Role = Role.admin
    # Whether the call must stay within TARGET_GROWTH from the smallest size to the largest.
    bounded: bool = True


ENDPOINTS = (
    Endpoint("GET /v1/reports/portfolio", "/v1/reports/portfolio"),
    Endpoint("GET /v1/reports/gaps", "/v1/reports/gaps"),
    Endpoint("GET /v1/reports/drift (first page)", "/v1/reports/drift"),
    Endpoint("GET /metrics (scrape)", "/metrics"),
    # As Prometheus scrapes it: with a viewer key. Its body is three lines per system.
    Endpoint("GET /metrics/systems (scrape)", "/metrics/systems", Role.viewer, bounded=False),
)

# (impact areas, oversight): a spread over all four risk tiers, as in bench/run.py.
PROFILES: tuple[tuple[list[str], str], ...] = (
    (["drafting"], "human_reviews_all"),
    (["customer_service", "records"], "human_reviews_sample"),
    (["operations"], "fully_automated"),
    (["money", "decisions"], "human_reviews_sample"),
    (["safety"], "human_reviews_all"),
)
STAGES = (("proposed", 45), ("pilot", 22), ("production", 25), ("suspended", 4), ("retired", 4))
FINDINGS = ("poor_data", "unclear_workflow", "missing_training", "no_risk_review")
# Approvals each tier's gates need under the default policy.
APPROVALS_NEEDED = {"high": {"production": 1}, "critical": {"pilot": 1, "production": 2}}


def log(message: str) -> None:
    print(message, flush=True)


# --- database ----------------------------------------------------------------------------


def libpq_url(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(False)


def admin(statement: str) -> None:
    with psycopg.connect(libpq_url(f"{PG_URL}/postgres"), autocommit=True) as connection:
        connection.execute(statement)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Keys:
    admin: str
    viewer: str

    def of(self, role: Role) -> str:
        return self.viewer if role == Role.viewer else self.admin


# --- seeding -----------------------------------------------------------------------------


@dataclass
class Portfolio:
    """What the seeder decided per system, kept to build the related rows."""

    stages: list[str]
    tiers: list[str]


def _copy(connection: psycopg.Connection[Any], table: str, columns: list[str], rows: Any) -> int:
    count = 0
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[arg-type]
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def seed_systems(
    connection: psycopg.Connection[Any], count: int, rng: random.Random, now: datetime
) -> Portfolio:
    stages: list[str] = []
    tiers: list[str] = []
    weights = [weight for _, weight in STAGES]
    names = [stage for stage, _ in STAGES]
    decisions = [derive_tier(areas, oversight) for areas, oversight in PROFILES]
    template = System(
        key="x",
        name="x",
        impact_areas=[],
        oversight="x",
        risk_tier="x",
        risk_tier_rule={},
        labels={},
        created_at=now,
        updated_at=now,
    ).model_dump()
    columns = list(template)

    def rows() -> Iterator[list[Any]]:
        for number in range(1, count + 1):
            profile = number % len(PROFILES)
            areas, oversight = PROFILES[profile]
            decision = decisions[profile]
            stage = rng.choices(names, weights)[0]
            stages.append(stage)
            tiers.append(decision.tier.value)
            created = now - timedelta(days=rng.uniform(200, 900))
            row = {
                **template,
                "id": number,
                "key": f"scale-{number:06d}",
                "name": f"Scale system {number}",
                # A few systems lack a field-satisfied control.
                "purpose": None if number % 97 == 0 else "Load for the scale benchmark.",
                "scope": None if number % 89 == 0 else "Loopback only.",
                "owner_team": f"team-{number % 250}",
                "owner_contact": "bench@example.com",
                "impact_areas": json.dumps(areas),
                "oversight": oversight,
                "risk_tier": decision.tier.value,
                "risk_tier_rule": json.dumps(
                    {"rule": decision.rule.value, "detail": decision.detail}
                ),
                "labels": json.dumps(
                    {
                        "env": ("prod", "staging", "dev")[number % 3],
                        "cost-centre": f"cc-{number % 7}",
                    }
                ),
                "stage": stage,
                "created_at": created,
                "updated_at": created,
            }
            yield [row[column] for column in columns]

    _copy(connection, "systems", columns, rows())
    connection.execute("SELECT setval(pg_get_serial_sequence('systems', 'id'), %s)", (count,))

    def labels() -> Iterator[tuple[Any, ...]]:
        for number in range(1, count + 1):
            yield number, "env", ("prod", "staging", "dev")[number % 3]
            yield number, "cost-centre", f"cc-{number % 7}"

    _copy(connection, "system_labels", ["system_id", "name", "value"], labels())
    return Portfolio(stages=stages, tiers=tiers)


def seed_evidence(
    connection: psycopg.Connection[Any],
    portfolio: Portfolio,
    rng: random.Random,
    now: datetime,
    evaluated_at: datetime,
) -> tuple[int, int]:
    """Every system has all 14 evidence controls with VERSIONS versions each. Returns the
    rows written and the systems given evidence that expires between evaluation and now."""
    stale_later = 0

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal stale_later
        for index, stage in enumerate(portfolio.stages):
            system_id = index + 1
            live = stage in ("production", "suspended")
            # Production systems are mostly healthy; a degraded one drifts.
            healthy = live and rng.random() < 0.85
            # One current version, at most, expires after the evaluation and before now.
            expiring = rng.random() < STALE_SHARE
            stale_later += expiring
            for position, control in enumerate(EVIDENCE_CONTROLS):
                if healthy:
                    current_status = "met"
                else:
                    current_status = rng.choices(("met", "partial", "not_met"), (75, 15, 10))[0]
                # Within the critical tier's 90 days for live systems; older ones go stale.
                age = rng.uniform(1, 80 if live else 240)
                current_at = now - timedelta(days=age)
                expires_at = None
                roll = rng.random()
                if expiring and position == 0:
                    expires_at = evaluated_at + EVALUATION_LAG * rng.uniform(0.05, 0.9)
                elif roll < 0.01:
                    expires_at = now - timedelta(days=rng.uniform(1, 60))  # expired: stale
                elif roll < 0.10:
                    expires_at = now + timedelta(days=rng.uniform(10, 400))
                for version in range(1, VERSIONS + 1):
                    current = version == VERSIONS
                    yield (
                        system_id,
                        control.value,
                        version,
                        current_status if current else rng.choice(("met", "partial", "not_met")),
                        f"Scale evidence, version {version}.",
                        expires_at if current else None,
                        current_at - timedelta(days=45 * (VERSIONS - version)),
                        "api",
                        current,
                    )

    columns = [
        "system_id", "control", "version", "status", "summary", "expires_at",
        "recorded_at", "source", "is_current",
    ]  # fmt: skip
    return _copy(connection, "evidence", columns, rows()), stale_later


def seed_lifecycle(
    connection: psycopg.Connection[Any], portfolio: Portfolio, rng: random.Random, now: datetime
) -> dict[str, int]:
    """Transitions, approvals, pilots and their results, as the stages imply."""
    transitions: list[tuple[Any, ...]] = []
    approvals: list[tuple[Any, ...]] = []
    pilots: list[tuple[Any, ...]] = []
    results: list[tuple[Any, ...]] = []
    pilot_id = 0

    def move(system_id: int, from_stage: str, to_stage: str, at: datetime) -> None:
        gate = to_stage if to_stage in ("pilot", "production") else None
        overridden = rng.random() < 0.01
        transitions.append(
            (
                system_id, from_stage, to_stage, "Scale benchmark move.", gate,
                rng.uniform(40, 100), 1, "[]",
                "Business need, accepted by the risk lead." if overridden else None,
                "bench", at,
            )
        )  # fmt: skip

    def pilot(system_id: int, *, started: datetime, running: bool) -> None:
        nonlocal pilot_id
        pilot_id += 1
        planned_end = started + timedelta(days=rng.uniform(20, 80))
        concluded = None if running else planned_end
        outcome = None if running else rng.choices(("pass", "warning", "fail"), (80, 15, 5))[0]
        pilots.append(
            (
                pilot_id, system_id, f"Pilot {pilot_id}", planned_end, "[]",
                "running" if running else "concluded", outcome,
                None if running else rng.uniform(50, 100), started, "bench", concluded,
                None if running else "bench",
            )
        )  # fmt: skip
        if not running:
            findings = [rng.choice(FINDINGS)] if rng.random() < 0.15 else []
            results.append(
                (pilot_id, json.dumps({"accuracy": rng.uniform(0.7, 0.99)}), json.dumps(findings),
                 planned_end - timedelta(days=1), "bench")
            )  # fmt: skip

    for index, (stage, tier) in enumerate(zip(portfolio.stages, portfolio.tiers, strict=True)):
        system_id = index + 1
        if stage == "proposed":
            needed = APPROVALS_NEEDED.get(tier, {}).get("pilot", 0)
            if needed and rng.random() < 0.5:
                approvals.append(
                    (system_id, "pilot", "approve", 9001, "bench-approver-1",
                     now - timedelta(days=rng.uniform(1, 20)))
                )  # fmt: skip
            continue
        if stage == "retired":
            move(system_id, "proposed", "retired", now - timedelta(days=rng.uniform(10, 300)))
            continue
        piloted = now - timedelta(days=rng.uniform(120, 180))
        move(system_id, "proposed", "pilot", piloted)
        if stage == "pilot":
            if rng.random() < 0.7:
                # Running; the older ones are past their planned end (stuck).
                pilot(system_id, started=now - timedelta(days=rng.uniform(5, 110)), running=True)
            continue
        pilot(system_id, started=piloted, running=False)
        released = piloted + timedelta(days=rng.uniform(60, 90))
        move(system_id, "pilot", "production", released)
        if stage == "suspended":
            move(system_id, "production", "suspended", now - timedelta(days=rng.uniform(1, 25)))
            continue
        needed = APPROVALS_NEEDED.get(tier, {}).get("production", 0)
        # Approvals given after the move and still valid keep the gate passing.
        if needed and rng.random() < 0.9:
            for approver in range(1, needed + 1):
                approvals.append(
                    (system_id, "production", "approve", 9000 + approver,
                     f"bench-approver-{approver}", now - timedelta(days=rng.uniform(1, 25)))
                )  # fmt: skip

    _copy(
        connection,
        "transitions",
        ["system_id", "from_stage", "to_stage", "reason", "gate", "score", "policy_version",
         "blocking", "override_justification", "actor_name", "occurred_at"],
        transitions,
    )  # fmt: skip
    _copy(
        connection,
        "approvals",
        ["system_id", "target_stage", "decision", "approver_id", "approver_name", "created_at"],
        approvals,
    )
    _copy(
        connection,
        "pilots",
        ["id", "system_id", "name", "planned_end", "criteria", "status", "outcome", "score",
         "created_at", "created_by_name", "concluded_at", "concluded_by_name"],
        pilots,
    )  # fmt: skip
    connection.execute("SELECT setval(pg_get_serial_sequence('pilots', 'id'), %s)", (pilot_id,))
    _copy(
        connection,
        "pilot_results",
        ["pilot_id", "metrics", "findings", "recorded_at", "recorded_by_name"],
        results,
    )
    return {
        "transitions": len(transitions),
        "approvals": len(approvals),
        "pilots": len(pilots),
        "pilot results": len(results),
    }


def seed_keys(connection: psycopg.Connection[Any], now: datetime) -> Keys:
    keys = Keys(admin=new_secret(), viewer=new_secret())
    for role, secret in ((Role.admin, keys.admin), (Role.viewer, keys.viewer)):
        connection.execute(
            "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (f"scale-{role.value}", role.value, hash_key(secret), secret[:10], now),
        )
    return keys


def store_readiness(database_url: str, count: int, evaluated_at: datetime) -> None:
    """Every system's readiness, evaluated by the app's own functions (`load_inputs` and
    `_evaluate`, what `reevaluate_all` and every write run) and stored in the columns and
    rows `_store` writes, but with COPY and one UPDATE instead of ORM statements per
    system: `reevaluate_all` takes minutes at 100,000 systems."""
    engine = create_engine(database_url)
    with Session(engine) as session:
        rules = policy_service.active_rules(session)
    conninfo = libpq_url(database_url)
    with psycopg.connect(conninfo) as connection:
        connection.execute(
            "CREATE TEMPORARY TABLE stored_readiness (id integer PRIMARY KEY, score float,"
            " level text, pilot_ready boolean, production_ready boolean, document text,"
            " policy_version integer, rules_version integer, valid_until timestamptz)"
            " ON COMMIT DROP"
        )
        with Session(engine) as session:
            for first in range(1, count + 1, EVALUATE_BATCH):
                ids = list(range(first, min(first + EVALUATE_BATCH, count + 1)))
                systems = {
                    system.id: system
                    for system in session.exec(select(System).where(col(System.id).in_(ids)))
                }
                inputs = readiness_inputs.load_inputs(
                    session, [systems[system_id] for system_id in ids], rules, evaluated_at
                )
                stored, blockers, snapshots = [], [], []
                for system_id in ids:
                    system = systems[system_id]
                    evaluation, readiness = readiness_service._evaluate(
                        system, inputs[system_id], rules, evaluated_at
                    )
                    pilot_ready = evaluation.gates[GateStage.pilot].ready
                    production_ready = evaluation.gates[GateStage.production].ready
                    stored.append(
                        (system_id, evaluation.score, evaluation.level.value, pilot_ready,
                         production_ready, readiness.model_dump_json(), readiness.policy_version,
                         readiness.rules_version, evaluation.valid_until)
                    )  # fmt: skip
                    blockers.extend(
                        (system_id, gate.value, item.code.value, item.control)
                        for gate, result in evaluation.gates.items()
                        for item in result.blocking
                    )
                    snapshots.append(
                        (system_id, evaluation.score, evaluation.level.value, pilot_ready,
                         production_ready, readiness.policy_version, readiness.rules_version,
                         readiness.evaluated_at)
                    )  # fmt: skip
                session.expunge_all()
                _copy(
                    connection,
                    "stored_readiness",
                    ["id", "score", "level", "pilot_ready", "production_ready", "document",
                     "policy_version", "rules_version", "valid_until"],
                    stored,
                )  # fmt: skip
                _copy(connection, "readiness_blockers", ["system_id", "gate", "code", "control"],
                      blockers)  # fmt: skip
                _copy(
                    connection,
                    "readiness_snapshots",
                    ["system_id", "score", "level", "pilot_ready", "production_ready",
                     "policy_version", "rules_version", "recorded_at"],
                    snapshots,
                )  # fmt: skip
        connection.execute(
            "UPDATE systems SET score = r.score, level = r.level, pilot_ready = r.pilot_ready,"
            " production_ready = r.production_ready, readiness_document = r.document,"
            " readiness_policy_version = r.policy_version,"
            " readiness_rules_version = r.rules_version, readiness_valid_until = r.valid_until"
            " FROM stored_readiness r WHERE systems.id = r.id"
        )
        connection.commit()
    engine.dispose()


def check_stored(database_url: str, evaluated_at: datetime, sample: int = 50) -> None:
    """A sample of stored answers must equal a fresh evaluation by the app at the same time."""
    engine = create_engine(database_url)
    with Session(engine) as session:
        systems = session.exec(select(System).order_by(col(System.id)).limit(sample)).all()
        for system in systems:
            evaluation, _ = readiness_service.evaluate_now(session, system, now=evaluated_at)
            got = (system.score, system.pilot_ready, system.production_ready)
            want = (
                evaluation.score,
                evaluation.gates[GateStage.pilot].ready,
                evaluation.gates[GateStage.production].ready,
            )
            if got != want:
                raise SystemExit(f"stored readiness of {system.key} is {got}, evaluation {want}")
        # Answers of other rules would all be judged afresh, which is not what is measured.
        others = session.exec(
            select(func.count()).select_from(System).where(readiness_service.other_rules())
        ).one()
        if others:
            raise SystemExit(f"{others} stored answers carry another rules version")
    engine.dispose()


def seed(database_url: str, count: int, now: datetime) -> Keys:
    rng = random.Random(20261126 + count)
    evaluated_at = now - EVALUATION_LAG
    started = time.perf_counter()
    with psycopg.connect(libpq_url(database_url)) as connection:
        portfolio = seed_systems(connection, count, rng, now)
        evidence, stale_later = seed_evidence(connection, portfolio, rng, now, evaluated_at)
        related = seed_lifecycle(connection, portfolio, rng, now)
        keys = seed_keys(connection, now)
        connection.commit()
    seeded = time.perf_counter()
    log(
        f"  seeded {count:,} systems, {evidence:,} evidence rows ({len(EVIDENCE_CONTROLS)}"
        f" controls x {VERSIONS} versions), "
        + ", ".join(f"{n:,} {name}" for name, n in related.items())
        + f" in {seeded - started:.1f} s; {stale_later:,} systems with evidence expiring"
        " after the evaluation"
    )
    store_readiness(database_url, count, evaluated_at)
    stored = time.perf_counter()
    check_stored(database_url, evaluated_at)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    log(
        f"  stored readiness in {stored - seeded:.1f} s (evaluated as of"
        f" {EVALUATION_LAG} ago), VACUUM ANALYZE in {time.perf_counter() - stored:.1f} s"
    )
    return keys


# --- measuring ---------------------------------------------------------------------------


def call(base: str, path: str, token: str) -> float:
    request = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"GET {path} answered {exc.code}: {exc.read()[:500]!r}") from exc
    return (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class Timing:
    median_ms: float
    max_ms: float


@dataclass(frozen=True)
class MirrorBuild:
    seconds: float  # as the app logs it, from the start of the build
    answered_meanwhile: int  # calls answered while it was being built


MIRROR_BUILT = re.compile(r"readiness mirror built: (\d+) systems in ([\d.]+) s")


def measure_cold(base: str, keys: Keys, app_log: Path) -> MirrorBuild:
    """Calls of each endpoint in turn while the mirror is still being built (answered by
    the aggregate queries), then the build's time as the app logs it."""
    started = time.perf_counter()
    answered = 0
    while not (built := MIRROR_BUILT.search(app_log.read_text(errors="replace"))):
        if time.perf_counter() - started > MIRROR_TIMEOUT:
            raise SystemExit(f"no mirror built after {MIRROR_TIMEOUT} s; see {app_log}")
        endpoint = ENDPOINTS[answered % len(ENDPOINTS)]
        took = call(base, endpoint.path, keys.of(endpoint.role))
        answered += 1
        if answered <= len(ENDPOINTS):
            log(f"  {endpoint.name} before the mirror is built: {took:.0f} ms")
    seconds = float(built.group(2))
    log(f"  mirror built in {seconds:.1f} s; {answered} calls answered meanwhile")
    return MirrorBuild(seconds, answered)


def measure(base: str, keys: Keys) -> dict[str, Timing]:
    timings = {}
    for endpoint in ENDPOINTS:
        name, path, token = endpoint.name, endpoint.path, keys.of(endpoint.role)
        for _ in range(WARMUP_CALLS):
            call(base, path, token)
        samples = [call(base, path, token) for _ in range(CALLS)]
        timings[name] = Timing(statistics.median(samples), max(samples))
        log(f"  {name}: median {timings[name].median_ms:.0f} ms, max {timings[name].max_ms:.0f} ms")
    return timings


def run_size(count: int, scratch: Path) -> tuple[dict[str, Timing], MirrorBuild]:
    name = f"readiness_scale_{count}_{os.getpid()}"
    database_url = f"{PG_URL}/{name}"
    log(f"\n{count:,} systems: database {name}")
    admin(f'DROP DATABASE IF EXISTS "{name}"')
    admin(f'CREATE DATABASE "{name}"')
    try:
        migrate(database_url)
        keys = seed(database_url, count, datetime.now(UTC))
        # Info, for the line that says the mirror is built (and one line per request).
        env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "info"}
        app_log = scratch / f"app-{count}.log"
        # The same server as `make bench`: one uvicorn worker, uvloop, httptools.
        with serve("app.main:app", env, app_log) as base:
            build = measure_cold(base, keys, app_log)
            timings = measure(base, keys)
        for line in log_summary(app_log):
            log(f"  app logged: {line}")
        return timings, build
    finally:
        if KEEP:
            log(f"  kept {database_url}")
        else:
            admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(results: dict[int, dict[str, Timing]], builds: dict[int, MirrorBuild]) -> None:
    sizes = sorted(results)
    small, large = sizes[0], sizes[-1]
    header = f"{'endpoint':<36}" + "".join(
        f" {f'{size // 1000}k median':>12} {f'{size // 1000}k max':>10}" for size in sizes
    )
    if large != small:
        header += f" {f'{large // 1000}k/{small // 1000}k':>9}"
    header += "  targets"
    log("")
    log(header)
    log("-" * len(header))
    for endpoint in ENDPOINTS:
        name = endpoint.name
        line = f"{name:<36}"
        for size in sizes:
            timing = results[size][name]
            line += f" {timing.median_ms:>12.0f} {timing.max_ms:>10.0f}"
        marks = []
        big = results[large][name].median_ms
        marks.append(f"< {TARGET_MS:.0f} ms {'PASS' if big < TARGET_MS else 'MISS'}")
        if large != small:
            ratio = big / results[small][name].median_ms
            line += f" {ratio:>9.2f}"
            if endpoint.bounded:
                verdict = "PASS" if ratio < TARGET_GROWTH else "MISS"
                marks.append(f"< {TARGET_GROWTH:g}x {verdict}")
            else:
                marks.append("no growth target (per system)")
        log(f"{line}  {', '.join(marks)}")
    log("(milliseconds; medians of sequential calls after warm-up; targets on the medians)")
    log("")
    for size in sizes:
        build = builds[size]
        marks = []
        if size >= MIRROR_TARGET_SIZE:
            verdict = "PASS" if build.seconds < MIRROR_TARGET_S else "MISS"
            marks.append(f"< {MIRROR_TARGET_S:g} s {verdict}")
            verdict = "PASS" if build.answered_meanwhile > 0 else "MISS"
            marks.append(f"requests answered meanwhile {verdict}")
        log(
            f"mirror build at {size:,} systems: {build.seconds:.1f} s,"
            f" {build.answered_meanwhile} calls answered meanwhile  {', '.join(marks)}"
        )


def main() -> None:
    log(
        f"scale run on {PG_URL}: sizes {', '.join(f'{s:,}' for s in SIZES)}; {CALLS} timed calls"
        f" per endpoint after {WARMUP_CALLS} warm-up; uvicorn 1 worker; {os.cpu_count()} CPUs"
    )
    results, builds = {}, {}
    with tempfile.TemporaryDirectory(prefix="readiness-scale-") as scratch:
        for count in SIZES:
            results[count], builds[count] = run_size(count, Path(scratch))
    report(results, builds)


if __name__ == "__main__":
    main()
