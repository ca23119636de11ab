"""Prometheus metrics, in two scrapes.

`render` (GET /metrics): portfolio gauges and the request metrics of app.metrics.http. Its
series are bounded by stages, tiers, gates, controls and routes, never by systems. The
gauges render the portfolio's counts (`app.reports.service.portfolio_counts`): once the
process's mirror of stored readiness (app.reports.mirror) is built, its counts, kept up to
date by reading only what changed since its last look, so a scrape costs what changed, not
the portfolio; until then, aggregate queries give the same numbers.

`render_systems` (GET /metrics/systems): each system's score and gate readiness, one line
per system and gate, from the same mirror (or, until it is built, every system read).

Both read the database, not the process, so every worker process answers the same."""

from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from app.lifecycle.stages import GateStage
from app.metrics import http as http_metrics
from app.models import System
from app.readiness import service as readiness_service
from app.reports import service as reports_service
from app.reports.counts import METRICS_NEEDS, PortfolioCounts
from app.reports.mirror import metrics_body, mirror_for, system_lines
from app.systems.service import SystemFilters

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def render(session: Session, *, now: datetime) -> str:
    counts = reports_service.portfolio_counts(
        session, filters=SystemFilters(), now=now, needs=METRICS_NEEDS
    )
    lines = [
        "# HELP readiness_systems Registered AI systems by lifecycle stage and risk tier.",
        "# TYPE readiness_systems gauge",
    ]
    for (stage, tier), count in counts.systems.items():
        lines.append(f"readiness_systems{{{_labels(stage=stage, tier=tier)}}} {count}")
    lines += _portfolio_gauges(counts)
    return "\n".join(lines) + "\n" + http_metrics.exposition()


def render_systems(session: Session, *, now: datetime) -> str:
    mirror = mirror_for(session)
    if mirror is None:
        return _system_lines_from_queries(session, now=now)
    with mirror.synced(session, now=now) as synced:
        return synced.metric_lines()


def _system_lines_from_queries(session: Session, *, now: datetime) -> str:
    """What the mirror gives `render_systems`, from every system's answer now."""
    answers = _answers_now(session, now=now)
    # Sorted here, not by the database, whose collation may order keys differently.
    answers.sort(key=lambda answer: answer[0])
    scores, gates = [], []
    for key, tier, stage, answer in answers:
        score_line, gate_lines = system_lines(key, tier, stage, answer)
        scores.append(score_line)
        gates.append(gate_lines)
    return metrics_body(scores, gates)


def _answers_now(
    session: Session, *, now: datetime
) -> list[tuple[str, str, str, tuple[float, bool, bool]]]:
    """Every system's (key, tier, stage, (score, pilot ready, production ready)) now: the
    stored answer while valid, else judged afresh (a batch at a time)."""
    valid = readiness_service.stored_answer_valid(now)
    answers = [
        (key, tier, stage, (score, bool(pilot), bool(production)))
        for key, tier, stage, score, pilot, production in session.execute(
            select(
                col(System.key),
                col(System.risk_tier),
                col(System.stage),
                col(System.score),
                col(System.pilot_ready),
                col(System.production_ready),
            ).where(valid)
        )
    ]
    stale = list(session.execute(select(System).where(~valid)).scalars())
    for system, (evaluation, _) in zip(
        stale, readiness_service.evaluate_many(session, stale, now=now), strict=True
    ):
        gates = evaluation.gates
        answer = (evaluation.score, gates[GateStage.pilot].ready, gates[GateStage.production].ready)
        answers.append((system.key, system.risk_tier, system.stage, answer))
    return answers


def _portfolio_gauges(counts: PortfolioCounts) -> list[str]:
    gauges = (
        ("readiness_drifted_systems", "Systems in production whose production gate fails now.",
         counts.drifted),
        ("readiness_stale_evidence", "Current evidence past its expiry or its tier's freshness.",
         counts.stale_evidence),
        ("readiness_systems_with_stale_evidence", "Systems with any stale current evidence.",
         counts.systems_with_stale_evidence),
        ("readiness_stuck_pilots", "Pilots running past planned_end or max_pilot_days.",
         counts.stuck_pilots),
    )  # fmt: skip
    lines = []
    for name, help_text, value in gauges:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {value}"]
    lines += [
        "# HELP readiness_blocking_control_systems Systems whose gate a control blocks"
        f" (the top {reports_service.TOP_CONTROLS} per gate).",
        "# TYPE readiness_blocking_control_systems gauge",
    ]
    for gate in reports_service.top_blocking_controls(counts):
        for control in gate.controls:
            labels = _labels(gate=gate.gate.value, control=control.control)
            lines.append(f"readiness_blocking_control_systems{{{labels}}} {control.systems}")
    return lines
