"""Prometheus metrics: portfolio gauges from the database, so every worker process answers
the same: per-system gauges and counts from the process's mirror of stored readiness
(app.readiness.mirror, which reads only what changed since the last scrape), the rest from
a few aggregate queries; then the request metrics of app.metrics.http."""

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from app.metrics import http as http_metrics
from app.models import Pilot
from app.policies import service as policy_service
from app.readiness.mirror import mirror_for
from app.reports import service as reports_service
from app.reports.schemas import GateBlockers

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def render(session: Session, *, now: datetime) -> str:
    with mirror_for(session).synced(session, now=now) as mirror:
        systems = sorted(mirror.systems.items())
        per_system = mirror.metric_lines()
        # Drift as the drift report judges it, from the answers now (stored or fresh).
        drifted = sum(mirror.drifted.values())
        blocking = reports_service.top_blocking_in(mirror, tier=None)
        stale = (
            sum(mirror.stale_evidence.values()),
            sum(mirror.systems_with_stale_evidence.values()),
        )
    lines = [
        "# HELP readiness_systems Registered AI systems by lifecycle stage and risk tier.",
        "# TYPE readiness_systems gauge",
    ]
    for (stage, tier), count in systems:
        lines.append(f"readiness_systems{{{_labels(stage=stage, tier=tier)}}} {count}")
    lines += _portfolio_gauges(session, drifted=drifted, stale=stale, blocking=blocking, now=now)
    return "\n".join(lines) + "\n" + per_system + http_metrics.exposition()


def _portfolio_gauges(
    session: Session,
    *,
    drifted: int,
    stale: tuple[int, int],
    blocking: list[GateBlockers],
    now: datetime,
) -> list[str]:
    stale_rows, stale_systems = stale
    max_pilot_days = policy_service.active_rules(session).rules.max_pilot_days
    # The portfolio lists the first stuck pilots; the gauge counts them all.
    stuck = session.execute(
        select(func.count())
        .select_from(Pilot)
        .where(reports_service.stuck_pilot(now, max_pilot_days=max_pilot_days))
    ).scalar_one()
    gauges = (
        ("readiness_drifted_systems", "Systems in production whose production gate fails now.",
         drifted),
        ("readiness_stale_evidence", "Current evidence past its expiry or its tier's freshness.",
         stale_rows),
        ("readiness_systems_with_stale_evidence", "Systems with any stale current evidence.",
         stale_systems),
        ("readiness_stuck_pilots", "Pilots running past planned_end or max_pilot_days.", stuck),
    )  # fmt: skip
    lines = []
    for name, help_text, value in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    lines += [
        "# HELP readiness_blocking_control_systems Systems whose gate a control blocks"
        f" (the top {reports_service.TOP_CONTROLS} per gate).",
        "# TYPE readiness_blocking_control_systems gauge",
    ]
    for gate in blocking:
        for control in gate.controls:
            labels = _labels(gate=gate.gate.value, control=control.control)
            lines.append(f"readiness_blocking_control_systems{{{labels}}} {control.systems}")
    return lines
