"""Prometheus gauges read from the database, so every worker process answers the same and a
scrape costs two aggregate queries however many systems there are."""

from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlmodel import Session, col
from sqlmodel import select as select_models

from app.models import System
from app.readiness import service as readiness_service

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def _still_valid(now: datetime) -> ColumnElement[bool]:
    return or_(col(System.readiness_valid_until).is_(None), col(System.readiness_valid_until) > now)


def render(session: Session, *, now: datetime) -> str:
    lines = [
        "# HELP readiness_systems Registered AI systems by lifecycle stage and risk tier.",
        "# TYPE readiness_systems gauge",
    ]
    counts = session.execute(
        select(col(System.stage), col(System.risk_tier), func.count())
        .group_by(col(System.stage), col(System.risk_tier))
        .order_by(col(System.stage), col(System.risk_tier))
    )
    for stage, tier, count in counts:
        lines.append(f"readiness_systems{{{_labels(stage=stage, tier=tier)}}} {count}")

    per_system = [
        (key, tier, stage, score, pilot_ready, production_ready)
        for key, tier, stage, score, pilot_ready, production_ready, _ in session.execute(
            select(
                col(System.key),
                col(System.risk_tier),
                col(System.stage),
                col(System.score),
                col(System.pilot_ready),
                col(System.production_ready),
                col(System.readiness_valid_until),
            )
            .where(_still_valid(now))
            .order_by(col(System.key))
        )
    ]
    # Rows whose stored answer time has made stale (usually few) are evaluated afresh.
    for system in session.exec(select_models(System).where(~_still_valid(now))):
        brief = readiness_service.summary(session, system, now=now)
        per_system.append(
            (
                system.key,
                system.risk_tier,
                system.stage,
                brief.score,
                brief.pilot_ready,
                brief.production_ready,
            )
        )
    per_system.sort(key=lambda row: row[0])
    lines += [
        "# HELP readiness_score Readiness score (0-100) now.",
        "# TYPE readiness_score gauge",
    ]
    for key, tier, stage, score, _, _ in per_system:
        labels = _labels(system=key, tier=tier, stage=stage)
        lines.append(f"readiness_score{{{labels}}} {score}")
    lines += [
        "# HELP readiness_gate_ready 1 when the gate to the stage passes now.",
        "# TYPE readiness_gate_ready gauge",
    ]
    for key, tier, stage, _, pilot_ready, production_ready in per_system:
        for gate, ready in (("pilot", pilot_ready), ("production", production_ready)):
            labels = _labels(system=key, tier=tier, stage=stage, gate=gate)
            lines.append(f"readiness_gate_ready{{{labels}}} {int(bool(ready))}")
    return "\n".join(lines) + "\n"
