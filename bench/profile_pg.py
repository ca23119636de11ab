"""`make profile-pg`: where the time of `make bench-pg`'s endpoints goes.

Seeds and serves as `bench/pg.py` does (two app workers on PostgreSQL), then drives each
endpoint with wrk twice:
- once plain, reading the CPU time each party spent from /proc: the app's workers, the
  PostgreSQL server's processes and wrk, per request. On a machine of few cores they share
  the cores, so a party's CPU per request bounds what the others can serve.
- once under py-spy, sampling in both workers the thread that holds the GIL: the Python
  work, which one process does one thread at a time. Each sample is sorted by the
  innermost frame that says what it was doing: in psycopg (sending, receiving,
  converting), in SQLAlchemy, in pydantic, in the app's own code, ...

py-spy is not a dependency of the service: give its path in PY_SPY (default: `py-spy` on
PATH), e.g. `python -m venv /tmp/prof && /tmp/prof/bin/pip install py-spy`.

Environment: as bench/pg.py, plus PY_SPY and PROFILE_SECONDS (default 10).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

import pg  # noqa: E402
import run as bench  # noqa: E402
from scale import admin  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

SECONDS = int(os.environ.get("PROFILE_SECONDS", "10"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The first of these found walking a sample's stack from its innermost frame names what the
# thread was doing. Order matters: a wait in libpq is reached through SQLAlchemy.
CATEGORIES = (
    ("psycopg (send, receive, convert)", ("psycopg/", "psycopg_pool/")),
    ("SQLAlchemy (compile, execute, ORM)", ("sqlalchemy/",)),
    ("pydantic (validate, serialize)", ("pydantic/", "pydantic_core/")),
    ("JSON", ("json/", "orjson")),
    ("FastAPI and Starlette (routing, dependencies)", ("fastapi/", "starlette/")),
    ("uvicorn and the HTTP parser", ("uvicorn/", "httptools/", "app/protocol.py")),
    ("thread hand-off (anyio, threading, asyncio)", ("anyio/", "threading.py", "asyncio/")),
    ("the app's own code", ("(app/",)),
)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def postgres_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """The app as bench-pg serves it, with the pid of uvicorn's supervisor."""
    before = set(_uvicorn_pids())
    with bench.serve("app.main:app", env, log, workers=pg.WORKERS) as base:
        yield base, min(set(_uvicorn_pids()) - before)


def _uvicorn_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "uvicorn app.main:app"], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


def cpu_shares(wrk: str, base: str, supervisor: int, endpoint: bench.Endpoint, token: str) -> str:
    workers = children(supervisor)
    app_before, pg_before = cpu_seconds(workers), cpu_seconds(postgres_pids())
    result = bench.run_wrk(wrk, base, endpoint, token, SECONDS, pg.SYSTEMS)
    app_cpu = cpu_seconds(workers) - app_before
    pg_cpu = cpu_seconds(postgres_pids()) - pg_before
    per_request = 1e6 / max(result.requests, 1)
    return (
        f"{result.per_second:,.0f} req/s; CPU per request: app {app_cpu * per_request:,.0f} us,"
        f" PostgreSQL {pg_cpu * per_request:,.0f} us (over {SECONDS} s: app {app_cpu:.1f} s,"
        f" PostgreSQL {pg_cpu:.1f} s of {os.cpu_count()} cores x {SECONDS} s)"
    )


def samples(raw: Path) -> Iterator[tuple[list[str], int]]:
    """py-spy's raw lines, `frame;frame;... count`, as stacks and counts."""
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():  # a frame name with a line break in it splits a stack: skip it
            yield stack.split(";"), int(count)


def categorise(raw: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for stack, count in samples(raw):
        counts[_category(stack)] += count
    return counts


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "other"


def own_code(raw: Path, top: int = 12) -> list[tuple[str, int]]:
    """The app's functions by samples spent inside them (inclusive), busiest first."""
    inclusive: Counter[str] = Counter()
    for stack, count in samples(raw):
        seen = {frame.split(" (")[0] + " " + frame.split("(")[-1].split(":")[0]
                for frame in stack if "(app/" in frame}  # fmt: skip
        for frame in seen:
            inclusive[frame] += count
    return inclusive.most_common(top)


def profile(py_spy: str, wrk: str, base: str, supervisor: int, endpoint: bench.Endpoint,
            token: str, out: Path) -> Path:  # fmt: skip
    raw = out / f"{endpoint.mode}.txt"
    recorder = subprocess.Popen(
        [py_spy, "record", "--pid", str(supervisor), "--subprocesses", "--gil",
         "--nonblocking", "--rate", "200", "--duration", str(SECONDS + 1),
         "--format", "raw", "--output", str(raw)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    bench.run_wrk(wrk, base, endpoint, token, SECONDS, pg.SYSTEMS)
    recorder.wait()
    return raw


def main() -> None:
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("py-spy not found: set PY_SPY (see this script's docstring)")
    wrk = bench.ensure_wrk()
    name = f"readiness_profile_pg_{os.getpid()}"
    database_url = f"{pg.PG_URL}/{name}"
    admin(f'DROP DATABASE IF EXISTS "{name}"')
    admin(f'CREATE DATABASE "{name}"')
    try:
        bench.migrate(database_url)
        engine = create_engine(database_url)
        keys = bench.seed(engine, pg.SYSTEMS, datetime.now(UTC))
        engine.dispose()
        env = {**os.environ, "DATABASE_URL": database_url}
        out = Path(os.environ.get("PROFILE_DIR") or tempfile.mkdtemp(prefix="readiness-prof-"))
        with serving(env, out / "app.log") as (base, supervisor):
            pg.check_answers(base, keys)
            for endpoint in pg.ENDPOINTS:
                token = getattr(keys, endpoint.credential)
                bench.run_wrk(wrk, base, endpoint, token, bench.WARMUP_SECONDS, pg.SYSTEMS)
                print(f"\n{endpoint.name}")
                print(f"  {cpu_shares(wrk, base, supervisor, endpoint, token)}")
                raw = profile(py_spy, wrk, base, supervisor, endpoint, token, out)
                counts = categorise(raw)
                busy = sum(counts.values())
                print("  the workers' GIL-holding samples by what they were doing:")
                for label, count in counts.most_common():
                    print(f"    {count / busy:6.1%}  {label}")
                print("  the app's functions, inclusive share of those samples:")
                for frame, count in own_code(raw):
                    print(f"    {count / busy:6.1%}  {frame}")
        print(f"\nraw py-spy stacks in {out}")
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
