# syntax=docker/dockerfile:1
# Build:   docker build -t readiness .
# Migrate: docker run --rm -e DATABASE_URL=... readiness alembic upgrade head
# Serve:   docker run -e DATABASE_URL=... -e WEB_CONCURRENCY=4 -p 8000:8000 readiness
# (docs/operations.md; deploy/k8s/ runs the same two commands.)

# Build stage: resolve dependencies from the lock file into a virtual environment.
FROM python:3.11-slim-bookworm AS build
ENV UV_PROJECT_ENVIRONMENT=/opt/venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY alembic.ini ./
COPY migrations ./migrations
COPY app ./app
# The root file system is read-only in production (deploy/k8s): compile now, since the
# process could not write __pycache__ there.
RUN python -m compileall -q app migrations

# Runtime stage: the virtual environment and the code, owned by root and run as a non-root
# user, so the process cannot change its own code.
FROM python:3.11-slim-bookworm
# WEB_CONCURRENCY: uvicorn's worker processes (its own default for --workers).
# PROMETHEUS_MULTIPROC_DIR: where each worker keeps its request metrics, so a scrape of any
# worker sums them all (app/metrics/http.py); the one path the service writes to.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 WEB_CONCURRENCY=2 \
    PROMETHEUS_MULTIPROC_DIR=/run/readiness-metrics
RUN groupadd --system --gid 10001 readiness \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app readiness \
    && install --directory --owner=10001 --group=10001 /run/readiness-metrics
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src/alembic.ini ./
COPY --from=build /src/migrations ./migrations
COPY --from=build /src/app ./app
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The standard library only: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Migrations are their own step: `docker run IMAGE alembic upgrade head` before rolling out.
# On SIGTERM uvicorn stops accepting connections and gives in-flight requests up to
# --timeout-graceful-shutdown seconds to finish; deploy/k8s's terminationGracePeriodSeconds
# leaves room for that and the preStop pause (tests/deploy check both). The app writes its
# own JSON request log, so uvicorn's access log is off. app.protocol is uvicorn's httptools
# protocol with a bound on request headers (431 past 16 KiB). No WebSocket routes: --ws none.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "20", "--no-access-log", "--http", "app.protocol:BoundedHttpToolsProtocol", "--ws", "none"]
