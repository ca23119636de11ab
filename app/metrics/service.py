"""Prometheus gauges read from the database, so every worker process answers the same and a
scrape costs two aggregate queries however many systems there are."""

from sqlalchemy import func, select
from sqlmodel import Session, col

from app.models import System

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def render(session: Session) -> str:
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

    per_system = list(
        session.execute(
            select(
                col(System.key),
                col(System.risk_tier),
                col(System.stage),
                col(System.score),
                col(System.pilot_ready),
                col(System.production_ready),
            ).order_by(col(System.key))
        )
    )
    lines += [
        "# HELP readiness_score Readiness score (0-100) as last evaluated.",
        "# TYPE readiness_score gauge",
    ]
    for key, tier, stage, score, _, _ in per_system:
        labels = _labels(system=key, tier=tier, stage=stage)
        lines.append(f"readiness_score{{{labels}}} {score}")
    lines += [
        "# HELP readiness_gate_ready 1 when the gate to the stage passed at the last evaluation.",
        "# TYPE readiness_gate_ready gauge",
    ]
    for key, tier, stage, _, pilot_ready, production_ready in per_system:
        for gate, ready in (("pilot", pilot_ready), ("production", production_ready)):
            labels = _labels(system=key, tier=tier, stage=stage, gate=gate)
            lines.append(f"readiness_gate_ready{{{labels}}} {int(bool(ready))}")
    return "\n".join(lines) + "\n"
