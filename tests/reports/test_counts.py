"""The two producers of the portfolio's counts agree: the aggregate queries
(`app.reports.queries.counts`) and the mirror of stored readiness (`Mirror.counts`), called
directly on the same data at the same `now`, for every scope.

The mirror keeps its counts by stage and tier, so for no filter, each stage, each tier and
each (stage, tier) the two are compared number for number, both for a mirror built at that
moment and for one built earlier that followed the writes and the time since. Scopes the
mirror does not count (owner team, labels, and their combinations with stage or tier) are
checked through the counts being additive: the queries' counts of the teams' (or labels')
scopes add up to the mirror's count of their union. Answers stored by other rules than the
running code's are counted by both as judged afresh, the same as once stored anew.
"""

import operator
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from functools import reduce
from itertools import product
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, and_, func, select, update
from sqlmodel import Session, col

from app.db import read_transaction
from app.lifecycle.stages import Stage
from app.models import System
from app.policies.service import default_policy_document
from app.readiness import service as readiness_service
from app.readiness.reevaluation import reevaluate
from app.readiness.tiers import Tier
from app.reports import mirror as mirror_module
from app.reports import queries
from app.reports.counts import EVERYTHING, Need, PortfolioCounts
from app.reports.mirror import Mirror
from app.reports.service import portfolio_counts
from app.systems.service import SystemFilters
from tests.conftest import FakeClock
from tests.factories import (
    confirm_tier,
    make_system,
    meet_every_control,
    record_evidence,
    transition,
)
from tests.readiness.later_rules import upgrade_to_later_rules

Headers = dict[str, str]
TEAMS = ("claims-platform", "writing")
ENVS = ("prod", "dev")
REGIONS = ("eu", "us")
OVERRIDE = {"justification": "Board decision, minute 7: ship before the audit"}

# Every system has one of TEAMS and an env and a region label (`system`), so each of these
# splits any scope into parts whose counts by the queries add up to the mirror's.
PARTITIONS: list[list[dict[str, Any]]] = [
    [{"owner_team": team} for team in TEAMS],
    [{"labels": (("env", env),)} for env in ENVS],
    [
        {"owner_team": team, "labels": (("env", env), ("region", region))}
        for team, env, region in product(TEAMS, ENVS, REGIONS)
    ],
]
WHOLES = [SystemFilters(), SystemFilters(stage="production"), SystemFilters(risk_tier="high")]


def needs_for(filters: SystemFilters) -> Need:
    """Everything the mirror counts for the scope (stuck pilots only of every system)."""
    return EVERYTHING if Mirror.answers(filters, EVERYTHING) else EVERYTHING & ~Need.STUCK


def added(parts: list[PortfolioCounts]) -> PortfolioCounts:
    """The counts of the union of disjoint scopes."""
    return reduce(operator.add, parts)


def test_counts_of_disjoint_scopes_add_up_part_by_part() -> None:
    needs = Need.SYSTEMS | Need.BLOCKING
    one = PortfolioCounts(
        needs=needs, systems={("pilot", "high"): 2}, score_tenths=1500, blocking={("pilot", "a"): 1}
    )
    other = PortfolioCounts(
        needs=needs, systems={("pilot", "high"): 1, ("proposed", "minimal"): 1}, score_tenths=7
    )
    assert one + other == PortfolioCounts(
        needs=needs,
        systems={("pilot", "high"): 3, ("proposed", "minimal"): 1},
        score_tenths=1507,
        blocking={("pilot", "a"): 1},
    )
    with pytest.raises(ValueError, match="do not add up"):
        one + PortfolioCounts(needs=Need.SYSTEMS)


def system(
    client: TestClient, admin: Headers, key: str, tier: str, team: str, env: str, region: str
) -> None:
    owner = {"team": team, "contact": f"{team}@example.com"}
    make_system(
        client, admin, key=key, tier=tier, owner=owner, labels={"env": env, "region": region}
    )


def start_pilot(
    client: TestClient, admin: Headers, *, key: str, ends: datetime, findings: list[str]
) -> int:
    pilot = client.post(
        f"/v1/systems/{key}/pilots",
        json={
            "name": f"trial ending {ends.date()}",
            "planned_end": ends.isoformat(),
            "criteria": [{"metric": "precision", "op": ">=", "target": 0.9}],
        },
        headers=admin,
    )
    assert pilot.status_code == 201, pilot.text
    pilot_id: int = pilot.json()["id"]
    if findings:
        result = client.post(
            f"/v1/pilots/{pilot_id}/results",
            json={"metrics": {"precision": 0.95}, "findings": findings},
            headers=admin,
        )
        assert result.status_code == 201, result.text
    return pilot_id


def seed_first(client: TestClient, admin: Headers, clock: FakeClock) -> None:
    """Systems of every tier and both teams, before the early mirror's first look."""
    system(client, admin, "drafty", "minimal", "writing", "prod", "eu")
    in_a_week = (clock.now + timedelta(days=7)).isoformat()
    for control in ("data_rules", "access_boundaries", "support_plan"):
        record_evidence(client, admin, key="drafty", control=control, expires_at=in_a_week)
    for control in ("monitoring", "training", "workflow"):
        record_evidence(client, admin, key="drafty", control=control)
    confirm_tier(client, admin, key="drafty")
    assert transition(client, admin, key="drafty", to="production").status_code == 201

    system(client, admin, "helpdesk", "limited", "writing", "dev", "us")
    tomorrow = (clock.now + timedelta(days=1)).isoformat()
    record_evidence(client, admin, key="helpdesk", control="monitoring", expires_at=tomorrow)
    record_evidence(client, admin, key="helpdesk", control="training", status="partial")

    system(client, admin, "lender", "high", "claims-platform", "prod", "eu")
    meet_every_control(client, admin, key="lender")
    assert transition(client, admin, key="lender", to="pilot").status_code == 201

    system(client, admin, "care", "critical", "claims-platform", "dev", "eu")
    assert transition(client, admin, key="care", to="production", override=OVERRIDE).status_code


def seed_later(client: TestClient, admin: Headers, clock: FakeClock) -> None:
    """Writes after the early mirror's first look: new systems, pilots and their results,
    evidence, stage moves out of and back into production, a retirement."""
    concluded = start_pilot(
        client,
        admin,
        key="lender",
        ends=clock.now + timedelta(days=20),
        findings=["missing_training", "poor_data"],
    )
    assert client.post(f"/v1/pilots/{concluded}/conclude", headers=admin).status_code == 200
    start_pilot(client, admin, key="lender", ends=clock.now + timedelta(days=1), findings=[])
    start_pilot(
        client, admin, key="lender", ends=clock.now + timedelta(days=30), findings=["poor_data"]
    )

    system(client, admin, "backlog", "high", "claims-platform", "prod", "us")
    record_evidence(client, admin, key="backlog", control="data_rules", status="not_met")
    record_evidence(client, admin, key="backlog", control="rollout_plan")

    system(client, admin, "paused", "limited", "writing", "prod", "us")
    meet_every_control(client, admin, key="paused")
    for stage in ("pilot", "production", "suspended"):
        assert transition(client, admin, key="paused", to=stage).status_code == 201

    system(client, admin, "sunset", "minimal", "claims-platform", "dev", "us")
    assert transition(client, admin, key="sunset", to="retired").status_code == 201

    # drafty leaves production and comes back with its week-long evidence.
    assert transition(client, admin, key="drafty", to="suspended").status_code == 201
    confirm_tier(client, admin, key="drafty")
    assert transition(client, admin, key="drafty", to="production").status_code == 201
    # helpdesk's training is met now, with evidence that expires in three days.
    in_three_days = (clock.now + timedelta(days=3)).isoformat()
    record_evidence(client, admin, key="helpdesk", control="training", expires_at=in_three_days)


@pytest.fixture
def session(app: FastAPI) -> Iterator[Session]:
    with read_transaction(app.state.database) as session:
        yield session


def built(session: Session, now: datetime) -> Mirror:
    mirror = Mirror()
    mirror.build(session, now=now, stop=threading.Event())
    return mirror


def scopes(session: Session, now: datetime) -> list[SystemFilters]:
    """Every scope of stages and tiers the mirror counts: none, each stage, each tier, each
    (stage, tier) with systems, and one without."""
    everything = queries.counts(session, filters=SystemFilters(), now=now, needs=Need.SYSTEMS)
    return [
        SystemFilters(),
        *(SystemFilters(stage=stage.value) for stage in Stage),
        *(SystemFilters(risk_tier=tier.value) for tier in Tier),
        *(
            SystemFilters(stage=stage, risk_tier=tier)
            for stage, tier in sorted({*everything.systems, ("retired", "critical")})
        ),
    ]


def assert_producers_agree(
    session: Session, early: Mirror, now: datetime, *, wholes: list[SystemFilters] = WHOLES
) -> dict[SystemFilters, PortfolioCounts]:
    """Both producers for every scope at `now`: the queries, `early` (built before and kept
    in step since) and a mirror built now; and the partitions of `wholes`. The queries'
    counts, by scope."""
    fresh = built(session, now)
    counted = {}
    for filters in scopes(session, now):
        needs = needs_for(filters)
        by_queries = queries.counts(session, filters=filters, now=now, needs=needs)
        assert early.counts(session, filters=filters, now=now, needs=needs) == by_queries, filters
        assert fresh.counts(session, filters=filters, now=now, needs=needs) == by_queries, filters
        counted[filters] = by_queries

    # Scopes the mirror does not count: owner teams, labels and their combinations, also
    # with stage or tier, add up to what the mirror counts for the whole.
    for whole, partition in product(wholes, PARTITIONS):
        needs = needs_for(whole)
        parts = [
            queries.counts(session, filters=replace(whole, **part), now=now, needs=needs)
            for part in partition
        ]
        by_mirror = early.counts(session, filters=whole, now=now, needs=needs)
        assert added(parts) == by_mirror, (whole, partition)
    return counted


@pytest.mark.parametrize("mirror_warmup", [False])
def test_both_producers_count_alike_for_every_scope_as_writes_and_time_pass(
    client: TestClient, admin: Headers, clock: FakeClock, session: Session
) -> None:
    seed_first(client, admin, clock)
    early = built(session, clock.now)  # the first look, before most writes
    seed_later(client, admin, clock)
    session.rollback()  # a new snapshot, with the writes since
    now = clock.now

    counted = assert_producers_agree(session, early, now)
    everything = counted[SystemFilters()]
    assert everything.total == 7
    assert everything.drifted == 1  # care, forced into production
    assert (everything.stale_evidence, everything.stuck_pilots) == (0, 0)
    assert everything.findings == {"missing_training": 1, "poor_data": 2}
    assert sum(everything.pilot_outcomes.values()) == 1
    assert everything.heading_reasons
    assert everything.blocking
    assert counted[SystemFilters(risk_tier="limited")].systems == {
        ("proposed", "limited"): 1,
        ("suspended", "limited"): 1,
    }

    # Time alone, no write: helpdesk's monitoring expires and a pilot overruns its end...
    session.rollback()
    now += timedelta(days=2)
    later = assert_producers_agree(session, early, now)[SystemFilters()]
    assert (later.stale_evidence, later.systems_with_stale_evidence) == (1, 1)
    assert later.stuck_pilots == 1
    # ... then helpdesk's training and drafty's week-long evidence: drafty drifts.
    session.rollback()
    now += timedelta(days=6)
    later = assert_producers_agree(session, early, now)[SystemFilters()]
    assert later.drifted == 2
    assert (later.stale_evidence, later.systems_with_stale_evidence) == (5, 2)
    # Past the high tier's freshness limit, all of lender's evidence is stale too.
    session.rollback()
    now += timedelta(days=200)
    aged = assert_producers_agree(session, early, now)[SystemFilters()]
    assert aged.systems_with_stale_evidence > later.systems_with_stale_evidence
    assert aged.stuck_pilots == 2


def test_many_systems_stored_at_once_are_read_in_batches(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mirror_module, "_CHUNK", 2)  # as a policy change storing every system
    keys = ("sys-a", "sys-b", "sys-c", "sys-d")
    for key, tier in zip(keys, ("minimal", "limited", "high", "critical"), strict=True):
        system(client, admin, key, tier, "writing", "prod", "eu")
    early = built(session, clock.now)
    for key in keys:
        meet_every_control(client, admin, key=key)
    session.rollback()
    counted = assert_producers_agree(session, early, clock.now, wholes=[])
    assert counted[SystemFilters()].ready_for_next_stage == 3  # critical: approval missing


def test_the_mirror_counts_the_scopes_it_keeps_and_the_queries_the_rest(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`portfolio_counts`, the one choice of producer: the built mirror for stages and
    tiers (stuck pilots only of every system), the queries otherwise."""
    system(client, admin, "lender", "high", "claims-platform", "prod", "eu")
    session.rollback()
    asked: list[SystemFilters] = []

    def counted_by_queries(session: Session, *, filters: SystemFilters, **kw: Any) -> Any:
        asked.append(filters)
        return by_queries(session, filters=filters, **kw)

    by_queries = queries.counts
    monkeypatch.setattr(queries, "counts", counted_by_queries)
    for filters, needs, by_mirror in [
        (SystemFilters(), EVERYTHING, True),
        (SystemFilters(risk_tier="high", stage="proposed"), EVERYTHING & ~Need.STUCK, True),
        (SystemFilters(risk_tier="high"), Need.STUCK, False),
        (SystemFilters(owner_team="claims-platform"), Need.SYSTEMS, False),
        (SystemFilters(labels=(("env", "prod"),)), Need.SYSTEMS, False),
    ]:
        asked.clear()
        counts = portfolio_counts(session, filters=filters, now=clock.now, needs=needs)
        assert asked == ([] if by_mirror else [filters])
        assert counts.needs == needs
        assert counts.systems == ({("proposed", "high"): 1} if Need.SYSTEMS in needs else {})
    monkeypatch.undo()
    with pytest.raises(ValueError, match="ready_for"):
        queries.counts(
            session, filters=SystemFilters(ready_for="pilot"), now=clock.now, needs=EVERYTHING
        )


@pytest.mark.parametrize("mirror_warmup", [False])
def test_a_stored_answer_the_validity_rule_rejects_is_judged_afresh_by_both(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    session: Session,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both producers take `stored_answer_valid` for which stored answers still hold, not
    only `readiness_valid_until`: one it rejects is judged afresh, whatever it says."""
    system(client, admin, "care", "critical", "claims-platform", "dev", "eu")
    assert transition(client, admin, key="care", to="production", override=OVERRIDE).status_code
    with engine.begin() as connection:  # a stored answer that no longer holds says "ready"
        connection.execute(
            update(System).where(col(System.key) == "care").values(production_ready=True)
        )
    session.rollback()
    valid = readiness_service.stored_answer_valid
    assert queries.counts(session, filters=SystemFilters(), now=clock.now, needs=Need.DRIFT) == (
        PortfolioCounts(needs=Need.DRIFT, drifted=0)
    )

    def rejecting_care(now: datetime) -> Any:
        return and_(valid(now), col(System.key) != "care")

    monkeypatch.setattr(readiness_service, "stored_answer_valid", rejecting_care)
    by_queries = queries.counts(session, filters=SystemFilters(), now=clock.now, needs=Need.DRIFT)
    assert by_queries.drifted == 1
    by_mirror = built(session, clock.now).counts(
        session, filters=SystemFilters(), now=clock.now, needs=Need.DRIFT
    )
    assert by_mirror == by_queries


@pytest.mark.parametrize("mirror_warmup", [False])
def test_answers_of_other_rules_are_counted_as_judged_now_the_same_as_once_stored_anew(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    session: Session,
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_first(client, admin, clock)
    seed_later(client, admin, clock)
    # Partial evidence, which the later rules score as nothing.
    system(client, admin, "triage", "limited", "writing", "dev", "eu")
    for control in ("data_rules", "data_quality", "testing_evidence", "monitoring"):
        record_evidence(client, admin, key="triage", control=control, status="partial")
    session.rollback()
    stored_before = queries.counts(
        session, filters=SystemFilters(), now=clock.now, needs=EVERYTHING
    )

    # A process of a later release starts: its mirror's first look finds only answers of
    # other rules; then one system is stored again, by the later rules.
    upgrade_to_later_rules(monkeypatch)
    session.rollback()
    early = built(session, clock.now)
    record_evidence(client, admin, key="backlog", control="monitoring", status="partial")
    session.rollback()
    of_other_rules = select(func.count()).where(readiness_service.other_rules())
    assert session.scalar(of_other_rules) == stored_before.total - 1
    judged = assert_producers_agree(session, early, clock.now)
    assert judged[SystemFilters()].score_tenths < stored_before.score_tenths

    # Time passes: the answers judged in place of stored ones are judged again.
    session.rollback()
    assert_producers_agree(session, built(session, clock.now), clock.now + timedelta(days=2))

    # Stored anew by the re-evaluation, every answer counts as it was judged.
    assert reevaluate(app.state.database, clock=lambda: clock.now) == stored_before.total - 1
    session.rollback()
    assert session.scalar(of_other_rules) == 0
    assert assert_producers_agree(session, early, clock.now) == judged


@pytest.mark.parametrize("mirror_warmup", [False])
def test_without_freshness_limits_evidence_goes_stale_only_at_its_expiry_for_both(
    client: TestClient, admin: Headers, clock: FakeClock, session: Session
) -> None:
    document = default_policy_document()
    for tier in document["tiers"].values():
        tier["evidence_fresh_days"] = None
    published = client.post("/v1/policies", json={**document, "activate": True}, headers=admin)
    assert published.status_code == 201, published.text
    seed_first(client, admin, clock)
    session.rollback()
    early = built(session, clock.now)
    later = clock.now + timedelta(days=400)  # past every tier's usual freshness limit
    stale = assert_producers_agree(session, early, later)[SystemFilters()]
    # Only the evidence that expires: helpdesk's monitoring and drafty's three week-long
    # ones, whatever their age.
    assert (stale.stale_evidence, stale.systems_with_stale_evidence) == (4, 2)


@pytest.mark.parametrize("mirror_warmup", [False])
def test_the_queries_count_answers_of_other_rules_as_stored_while_too_many_wait(
    client: TestClient,
    admin: Headers,
    clock: FakeClock,
    session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    system(client, admin, "triage", "limited", "writing", "dev", "eu")
    system(client, admin, "intake", "limited", "writing", "dev", "us")
    for key in ("triage", "intake"):
        record_evidence(client, admin, key=key, control="data_rules", status="partial")
    session.rollback()
    stored = queries.counts(session, filters=SystemFilters(), now=clock.now, needs=EVERYTHING)
    upgrade_to_later_rules(monkeypatch)
    judged = queries.counts(session, filters=SystemFilters(), now=clock.now, needs=EVERYTHING)
    assert judged.score_tenths < stored.score_tenths
    # Two wait: more than the queries judge afresh on each call.
    monkeypatch.setattr(queries, "JUDGED_AT_MOST", 1)
    assert (
        queries.counts(session, filters=SystemFilters(), now=clock.now, needs=EVERYTHING) == stored
    )
