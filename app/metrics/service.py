"""Prometheus metrics: portfolio gauges read from the database, so every worker process
answers the same and a scrape costs a fixed set of aggregate queries however many systems
there are, then the request metrics of app.metrics.http."""

from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session, col
from sqlmodel import select as select_models

from app.lifecycle.stages import GateStage, Stage
from app.metrics import http as http_metrics
from app.models import Pilot, System
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.reports import service as reports_service
from app.systems.service import SystemFilters

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


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

    valid = readiness_service.stored_answer_valid(now)
    # Labels escaped once per system: at 100,000 systems this loop is most of a scrape.
    per_system = [
        (
            f'system="{_escape(key)}",tier="{_escape(tier)}",stage="{_escape(stage)}"',
            key,
            stage,
            row,
        )
        for key, tier, stage, *row in session.execute(
            select(
                col(System.key),
                col(System.risk_tier),
                col(System.stage),
                col(System.score),
                col(System.pilot_ready),
                col(System.production_ready),
            )
            .where(valid)
            .order_by(col(System.key))
        )
    ]
    # Rows whose stored answer time has made stale are evaluated afresh, a batch at a time.
    stale = list(session.exec(select_models(System).where(~valid)))
    if stale:
        for system, (evaluation, _) in zip(
            stale, readiness_service.evaluate_many(session, stale, now=now), strict=True
        ):
            labels = _labels(system=system.key, tier=system.risk_tier, stage=system.stage)
            gates = evaluation.gates
            ready = [gates[GateStage.pilot].ready, gates[GateStage.production].ready]
            per_system.append((labels, system.key, system.stage, [evaluation.score, *ready]))
        per_system.sort(key=lambda row: row[1])
    lines += [
        "# HELP readiness_score Readiness score (0-100) now.",
        "# TYPE readiness_score gauge",
    ]
    lines += [f"readiness_score{{{labels}}} {row[0]}" for labels, _, _, row in per_system]
    lines += [
        "# HELP readiness_gate_ready 1 when the gate to the stage passes now.",
        "# TYPE readiness_gate_ready gauge",
    ]
    for labels, _, _, (_, pilot_ready, production_ready) in per_system:
        lines.append(f'readiness_gate_ready{{{labels},gate="pilot"}} {int(bool(pilot_ready))}')
        lines.append(
            f'readiness_gate_ready{{{labels},gate="production"}} {int(bool(production_ready))}'
        )
    # Drift as the drift report judges it, from the answers above (stored or fresh).
    drifted = sum(
        stage == Stage.production.value and not production_ready
        for _, _, stage, (_, _, production_ready) in per_system
    )
    lines += _portfolio_gauges(session, drifted=drifted, now=now)
    return "\n".join(lines) + "\n" + http_metrics.exposition()


def _portfolio_gauges(session: Session, *, drifted: int, now: datetime) -> list[str]:
    everything = SystemFilters()
    stale, stale_systems = reports_service.stale_evidence(session, filters=everything, now=now)
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
         stale),
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
    for gate in reports_service.top_blocking_controls(session, filters=everything):
        for blocking in gate.controls:
            labels = _labels(gate=gate.gate.value, control=blocking.control)
            lines.append(f"readiness_blocking_control_systems{{{labels}}} {blocking.systems}")
    return lines
