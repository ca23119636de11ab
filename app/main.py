import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute

from app.audit.keyfile import KeyFileError
from app.audit.router import router as audit_router
from app.audit.signing import SigningKey
from app.auth.bootstrap import START_WAIT as BOOTSTRAP_START_WAIT
from app.auth.bootstrap import BootstrapKey
from app.auth.dependencies import Identities, authenticate_before_body
from app.auth.oidc import OidcVerifier, load_providers
from app.auth.router import router as api_keys_router
from app.badges.router import router as badges_router
from app.clock import Clock, system_clock
from app.config import Settings, get_settings
from app.controls.router import router as controls_router
from app.db.engines import create_database
from app.db.sqlite_wal import WalCheckpointer
from app.errors import install_error_handlers
from app.events.router import router as events_router
from app.evidence.router import router as evidence_router
from app.health.router import router as health_router
from app.idempotency.middleware import Idempotency
from app.integrations.kubernetes.router import router as kubernetes_router
from app.integrations.mlflow.reconcile import MlflowReconciler
from app.integrations.mlflow.router import router as mlflow_router
from app.lifecycle.router import router as lifecycle_router
from app.metrics import http as http_metrics
from app.metrics.router import router as metrics_router
from app.middleware import (
    BodySizeLimit,
    HeadAsGet,
    RequestLog,
    SecurityHeaders,
    UnexpectedErrors,
)
from app.openapi_docs import CONTACT, LICENSE, SERVERS, TAGS, install_openapi
from app.pilots.router import router as pilots_router
from app.policies.router import router as policies_router
from app.readiness.expiry import ExpiryScheduler
from app.readiness.reevaluation import StaleRulesReevaluation
from app.readiness.router import router as readiness_router
from app.reports.router import router as reports_router
from app.reports.warmup import MirrorWarmup
from app.systems.router import router as systems_router
from app.webhooks.dispatcher import WebhookDispatcher
from app.webhooks.router import deliveries_sent
from app.webhooks.router import router as webhooks_router

PROJECT_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("app")
# What a browser on an allowed origin may send and read (READINESS_CORS_ORIGINS).
CORS_REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "X-Request-ID",
]
CORS_RESPONSE_HEADERS = ["ETag", "Location", "X-Request-ID", "Idempotent-Replayed", "Allow"]


GC_YOUNG_THRESHOLD = 10_000


def operation_id(route: APIRoute) -> str:
    """Stable camelCase operationIds from the route functions' names."""
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> FastAPI:
    settings = settings or get_settings()
    logger.setLevel(settings.log_level.upper())
    if not logger.handlers:
        # Lines are written as they come (the request log is JSON already); uvicorn's own
        # loggers keep their format.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    database = create_database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
    )
    providers = load_providers(settings.readiness_oidc_config)
    identities = Identities(database, OidcVerifier(providers) if providers else None)
    # Reads the clock from app.state when it builds, as requests do (tests swap it).
    warmup = MirrorWarmup(database, clock=lambda: app.state.clock())
    checkpointer = WalCheckpointer(database)
    reevaluation = StaleRulesReevaluation(database, clock=lambda: app.state.clock())
    expiry = ExpiryScheduler(
        database,
        clock=lambda: app.state.clock(),
        interval=settings.readiness_expiry_interval_s,
    )
    dispatcher = WebhookDispatcher(
        database,
        settings=settings,
        clock=lambda: app.state.clock(),
        requests_answered=http_metrics.answered,
    )
    reconciler = MlflowReconciler(database, settings=settings, clock=lambda: app.state.clock())

    secret = settings.readiness_bootstrap_admin_key
    bootstrap = (
        BootstrapKey(database, secret.get_secret_value(), clock=lambda: app.state.clock())
        if secret is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads()
        # At start-up, not at the first checkpoint: a key file the service refuses (looser
        # permissions, no key in it, none can be made) stops the process before it serves.
        try:
            signing_key.load()
        except KeyFileError as exc:
            logger.error("cannot start: %s", exc)
            raise
        if bootstrap is not None:
            # With a healthy database the key exists before the first request. One that is
            # down or not migrated yet delays start-up by this wait at most: the process
            # serves whatever the database's state, and the thread makes the key later.
            bootstrap.start()
            await anyio.to_thread.run_sync(bootstrap.wait_first_try, BOOTSTRAP_START_WAIT)
        # Everything built so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise re-walk it under load.
        gc.freeze()
        # A write batch keeps thousands of objects alive for a few milliseconds; at the
        # default threshold of 700 allocations the collector walked them again and again
        # (about a fifth of a batch's time). Cycles are rare here, so collect less often.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        if settings.readiness_mirror_warmup:
            warmup.start()  # in the background: start-up and the probes never wait for it
        checkpointer.start()
        if settings.readiness_reevaluate_on_start:
            reevaluation.start()  # in the background too: stale answers are never served
        if settings.readiness_expiry_events:
            expiry.start()
        dispatcher.start()  # unless READINESS_WEBHOOK_DISPATCH is off
        reconciler.start()  # with READINESS_MLFLOW_TRACKING_URI, unless its interval is 0
        yield
        # Before the engines go: no build may go on reading from a disposed pool.
        reconciler.stop()
        dispatcher.stop()
        expiry.stop()
        reevaluation.stop()
        warmup.stop()
        checkpointer.stop()
        if bootstrap is not None:
            bootstrap.stop()
        if identities.oidc is not None:
            identities.oidc.close()
        database.dispose()

    app = FastAPI(
        title="Readiness",
        version="1.0.0",
        summary="Is this AI system ready for the stage it is about to enter?",
        description=(
            "Scores AI systems' readiness against a risk-tiered policy, gates lifecycle"
            " transitions and keeps an append-only audit trail. Errors are RFC 9457 problem"
            " details."
        ),
        contact=CONTACT,
        license_info=LICENSE,
        servers=SERVERS,
        openapi_tags=TAGS,
        lifespan=lifespan,
        separate_input_output_schemas=False,
        # The service reports through its own request log and metrics; FastAPI's
        # OpenTelemetry hooks would otherwise look for providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.database = database
    app.state.identities = identities
    app.state.clock = clock
    app.state.mirror_warmup = warmup
    signing_key = SigningKey(
        database,
        seed=settings.audit_signing_seed(),
        key_file=settings.audit_signing_key_file(),
        clock=lambda: app.state.clock(),
    )
    app.state.audit_signing_key = signing_key
    app.state.webhook_dispatcher = dispatcher

    install_error_handlers(app)
    # Innermost, so a 500 passes through every other middleware like any answer.
    app.add_middleware(UnexpectedErrors)
    # Inside the size limit: bodies it buffers are bounded.
    app.add_middleware(Idempotency)
    # Idempotency reads and writes the database around the app: its own failures (a 503
    # when the database is down) are answered here, still inside the log and the headers.
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if origins := settings.cors_origins():
        # Off unless origins are configured; inside SecurityHeaders and RequestLog, so
        # preflight answers carry those headers and are logged. Keys travel in a header,
        # never a cookie, so no credentials mode.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_RESPONSE_HEADERS,
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    # Inside the request log, which logs and counts HEAD as HEAD; outside everything else,
    # so every answer to a HEAD, errors included, goes without its body.
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestLog)

    for router in (
        # Routes match in this order: readiness is the call dashboards poll, evidence the
        # one pipelines send (matching a request against every route before them took
        # about 3% of a write).
        readiness_router,
        evidence_router,
        health_router,
        metrics_router,
        api_keys_router,
        controls_router,
        policies_router,
        systems_router,
        lifecycle_router,
        pilots_router,
        events_router,
        audit_router,
        webhooks_router,
        reports_router,
        badges_router,
        kubernetes_router,
        mlflow_router,
    ):
        # The routes themselves, not `include_router`: included, FastAPI builds every
        # route's handler again for each app on its first request (its own copy, ~15 ms of
        # CPU), while these were built once, at import. Their paths carry their routers'
        # prefixes already. Shared by every app of the process, they take no
        # `app.dependency_overrides`.
        for route in router.routes:
            if isinstance(route, APIRoute):
                if route.operation_id is None:
                    route.operation_id = operation_id(route)
                authenticate_before_body(route)
        app.router.routes.extend(router.routes)
    # What the service sends to webhook subscribers, described in the document's `webhooks`.
    app.webhooks.routes.extend(deliveries_sent.routes)
    install_openapi(app)
    return app


app = create_app()
