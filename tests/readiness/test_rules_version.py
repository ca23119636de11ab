"""Stored answers follow the rules of the code that serves them (app.readiness.rules_version).

The golden digest pins what the rules decide over a fixed spread of facts: change scoring,
tiers or gates and it changes, and the test asks for RULES_VERSION to be bumped with it. The
other tests show what a changed rule does to answers stored before it: never served, re-
evaluated on request (`make reevaluate`) and at start-up.
"""

import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from app.config import Settings
from app.controls.catalogue import CONTROL_KEYS, EVIDENCE_CONTROLS
from app.lifecycle.stages import GateStage
from app.main import create_app
from app.policies.document import PolicyRules
from app.policies.service import default_policy_document
from app.readiness import rules_version, scoring
from app.readiness.reevaluation import reevaluate
from app.readiness.scoring import (
    ApprovalFacts,
    ControlStatus,
    EvidenceFact,
    EvidenceStatus,
    FindingFact,
    PilotFact,
    ReadinessFacts,
    evaluate,
)
from app.readiness.tiers import ImpactArea, Oversight, Tier, derive_tier
from tests.conftest import ADMIN_SECRET, FakeClock, project_path
from tests.factories import make_system, readiness, record_evidence
from tests.readiness.later_rules import upgrade_to_later_rules

# What the rules decide over the golden facts, by rules version. A new version adds its
# digest here; the old ones stay as the record of what each version meant.
GOLDEN_DIGESTS = {
    1: "518f087df8a31e8489a0315e176441394ba909d0f4f4416bc97b1fa703d78205",
    2: "f2e0fd9e1823be9acac08a34d7dbdc71ca85a018b073d873a354d4278845db74",
    # The same decisions over the same facts: version 3 changed which approvals and
    # waivers the loader hands the rule (app.readiness.inputs), not the rule.
    3: "f2e0fd9e1823be9acac08a34d7dbdc71ca85a018b073d873a354d4278845db74",
    4: "4f45f79f4cbb60100eab09b86385d25f251f3c8996da2fd56c88ac1233a7c917",
}

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _ready_facts(rng: random.Random) -> ReadinessFacts:
    """A system with everything in place, so the golden answers reach both gates open."""
    recent = NOW - timedelta(days=rng.choice([1, 20]))
    return ReadinessFacts(
        tier=rng.choice(list(Tier)),
        system_fields={"purpose": True, "owner": True, "scope": True},
        evidence={
            control: EvidenceFact(EvidenceStatus.met, recent) for control in EVIDENCE_CONTROLS
        },
        now=NOW,
        pilot=PilotFact(pilot_id=1, outcome="success"),
        approvals={
            stage: ApprovalFacts(
                approvers=rng.choice([1, 2, 3]), expires_at=(NOW + timedelta(days=9),)
            )
            for stage in GateStage
        },
    )


def _golden_facts(rng: random.Random) -> ReadinessFacts:
    if rng.random() < 0.15:
        return _ready_facts(rng)
    evidence = {}
    for control in EVIDENCE_CONTROLS:
        if rng.random() < 0.2:
            continue  # missing
        age = timedelta(days=rng.choice([1, 30, 100, 200, 400, 800]))
        expires = rng.choice([None, None, NOW - timedelta(days=1), NOW + timedelta(days=10)])
        evidence[control] = EvidenceFact(
            rng.choice(list(EvidenceStatus)), NOW - age, expires, rng.choice(["api", "mlflow"])
        )
    waivers = {
        control: NOW + timedelta(days=rng.choice([-1, 5]))
        for control in rng.sample(EVIDENCE_CONTROLS, rng.choice([0, 0, 1, 2]))
    }
    approvals = {
        stage: ApprovalFacts(
            approvers=rng.choice([0, 1, 2, 3]),
            rejected_by=tuple(rng.sample(["ana", "ben"], rng.choice([0, 0, 0, 1]))),
            expires_at=(NOW + timedelta(days=rng.choice([1, 60])),),
        )
        for stage in GateStage
        if rng.random() < 0.7
    }
    pilot = (
        PilotFact(pilot_id=rng.randint(1, 9), outcome=rng.choice(["success", "partial", "failed"]))
        if rng.random() < 0.6
        else None
    )
    findings = tuple(
        FindingFact(control=control, pilot_id=1, finding=rng.choice(["bias", "drift"]))
        for control in rng.sample(EVIDENCE_CONTROLS, rng.choice([0, 0, 1]))
    )
    # Judged for a release about a third of the time, over evidence naming that release,
    # an earlier one (with or without an earlier version that counts), or none.
    release = rng.choice([None, None, "2.0"])
    release_evidence = {}
    if release is not None:
        evidence = {
            control: dataclasses.replace(fact, release=rng.choice([None, "2.0", "1.9"]))
            for control, fact in evidence.items()
        }
        release_evidence = {
            control: EvidenceFact(EvidenceStatus.met, NOW - timedelta(days=3))
            for control, fact in evidence.items()
            if fact.release == "1.9" and rng.random() < 0.5
        }
    return ReadinessFacts(
        tier=rng.choice(list(Tier)),
        system_fields={name: rng.random() < 0.9 for name in ("purpose", "owner", "scope")},
        evidence=evidence,
        now=NOW,
        waivers=waivers,
        pilot=pilot,
        approvals=approvals,
        open_findings=findings,
        release=release,
        release_evidence=release_evidence,
        classification_confirmed=rng.random() < 0.7,
    )


def _golden_evaluations() -> list[Any]:
    rules = PolicyRules.model_validate(default_policy_document())
    rng = random.Random(20261201)
    evaluations: list[Any] = [
        dataclasses.asdict(evaluate(_golden_facts(rng), rules)) for _ in range(400)
    ]
    for areas in range(1 << len(ImpactArea)):
        chosen = [area for bit, area in enumerate(ImpactArea) if areas >> bit & 1]
        if len(chosen) > 2:
            continue
        for oversight in Oversight:
            for declared in (None, *Tier):
                evaluations.append(dataclasses.asdict(derive_tier(chosen, oversight, declared)))
    return evaluations


def golden_digest() -> str:
    document = json.dumps(_golden_evaluations(), sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()


def test_the_rules_version_changes_when_the_rules_do() -> None:
    version = rules_version.RULES_VERSION
    digest = golden_digest()
    assert version in GOLDEN_DIGESTS, (
        f"RULES_VERSION {version} has no golden digest: record {digest!r} for it"
    )
    assert GOLDEN_DIGESTS[version] == digest, (
        "What the readiness rules decide has changed, but RULES_VERSION has not: answers"
        " stored by the old rules would be served as if they were current. Bump"
        " app/readiness/rules_version.RULES_VERSION and record the new digest"
        f" {digest!r} for it here (if only the default policy file changed, record it for the"
        " current version instead)."
    )


def test_the_golden_facts_reach_every_status_and_blocking_code() -> None:
    evaluations = _golden_evaluations()[:400]
    statuses = {control["status"] for item in evaluations for control in item["controls"]}
    codes = {
        blocking["code"]
        for item in evaluations
        for gate in item["gates"].values()
        for blocking in gate["blocking"]
    }
    assert statuses == set(ControlStatus)
    assert codes == set(scoring.BlockingCode)
    assert {item["level"] for item in evaluations} == set(scoring.Level)


# --- answers stored by other rules ------------------------------------------------------


def _stored(engine: Engine, key: str) -> tuple[float, int, str]:
    with engine.connect() as connection:
        score, version, document = connection.execute(
            text(
                "SELECT score, readiness_rules_version, readiness_document FROM systems"
                " WHERE key = :key"
            ),
            {"key": key},
        ).one()
    return score, version, document


def _partly_ready(client: TestClient, pipeline: dict[str, str], key: str) -> None:
    make_system(client, pipeline, key=key, tier="limited")
    for control in ("data_rules", "data_quality", "testing_evidence", "monitoring"):
        record_evidence(client, pipeline, key=key, control=control, status="partial")


def test_an_answer_stored_by_other_rules_is_never_served(
    client: TestClient,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _partly_ready(client, pipeline, "sys-rules")
    before = readiness(client, viewer, key="sys-rules")
    assert before["rules_version"] == rules_version.RULES_VERSION
    stored_score, stored_version, _ = _stored(engine, "sys-rules")
    assert (stored_score, stored_version) == (before["score"], rules_version.RULES_VERSION)

    upgrade_to_later_rules(monkeypatch)

    after = readiness(client, viewer, key="sys-rules")
    assert after["rules_version"] == rules_version.RULES_VERSION
    assert after["score"] < before["score"]
    listed = client.get("/v1/systems", headers=viewer).json()["items"]
    assert [item["score"] for item in listed] == [after["score"]]
    # A read does not write: the stored answer is still the old one, until re-evaluated.
    assert _stored(engine, "sys-rules")[:2] == (before["score"], stored_version)


def test_make_reevaluate_stores_the_answers_of_other_rules_anew(
    client: TestClient,
    app: FastAPI,
    pipeline: dict[str, str],
    viewer: dict[str, str],
    engine: Engine,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("sys-a", "sys-b", "sys-c"):
        _partly_ready(client, pipeline, key)
    old = {key: readiness(client, viewer, key=key)["score"] for key in ("sys-a", "sys-b", "sys-c")}

    upgrade_to_later_rules(monkeypatch)
    new_version = rules_version.RULES_VERSION

    done: list[int] = []
    stored = reevaluate(app.state.database, clock=clock, size=2, progress=done.append)
    assert stored == 3
    assert done == [2, 1]
    for key, score in old.items():
        now_stored, version, document = _stored(engine, key)
        assert version == new_version
        assert now_stored < score
        assert json.loads(document)["rules_version"] == new_version
    # Nothing is left of other rules, so a second run stores nothing.
    assert reevaluate(app.state.database, clock=clock) == 0

    history = client.get("/v1/systems/sys-a/readiness/history", headers=viewer).json()["items"]
    assert history[0]["rules_version"] == new_version
    assert history[0]["score"] == _stored(engine, "sys-a")[0]
    assert history[1]["rules_version"] == new_version - 1


def _another_worker(database_url: str, clock: FakeClock, **settings: Any) -> FastAPI:
    """An app on the same database, as a worker of the upgraded release starts."""
    return create_app(
        Settings(
            database_url=database_url,
            readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
            readiness_mirror_warmup=False,
            **settings,
        ),
        clock=clock,
    )


def test_each_worker_reevaluates_answers_of_other_rules_at_start_up(
    client: TestClient,
    pipeline: dict[str, str],
    database_url: str,
    engine: Engine,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _partly_ready(client, pipeline, "sys-start")
    old_score = _stored(engine, "sys-start")[0]

    upgrade_to_later_rules(monkeypatch)
    upgraded = _another_worker(database_url, clock)
    try:
        with TestClient(upgraded):
            deadline = time.monotonic() + 10
            while _stored(engine, "sys-start")[1] != rules_version.RULES_VERSION:
                assert time.monotonic() < deadline, "not re-evaluated at start-up"
                time.sleep(0.05)
    finally:
        upgraded.state.database.dispose()
    assert _stored(engine, "sys-start")[0] < old_score


def test_reevaluation_at_start_up_can_be_turned_off(
    client: TestClient,
    pipeline: dict[str, str],
    database_url: str,
    engine: Engine,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _partly_ready(client, pipeline, "sys-off")
    upgrade_to_later_rules(monkeypatch)
    upgraded = _another_worker(database_url, clock, readiness_reevaluate_on_start=False)
    try:
        with TestClient(upgraded) as upgraded_client:
            assert upgraded_client.get("/healthz").status_code == 200
            time.sleep(0.3)
    finally:
        upgraded.state.database.dispose()
    assert _stored(engine, "sys-off")[1] == rules_version.RULES_VERSION - 1


def _command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.readiness.reevaluation", *args],
        cwd=project_path(),
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_the_reevaluate_command_restamps_answers_from_before_versions(
    client: TestClient, pipeline: dict[str, str], database_url: str, engine: Engine
) -> None:
    for key in ("sys-x", "sys-y"):
        _partly_ready(client, pipeline, key)
    # As an upgrade from a release that recorded no rules version leaves them.
    with engine.begin() as connection:
        connection.execute(text("UPDATE systems SET readiness_rules_version = 0"))

    finished = _command(database_url)
    assert finished.returncode == 0, finished.stderr
    assert f"2 answers stored under rules version {rules_version.RULES_VERSION}" in finished.stdout
    assert {_stored(engine, key)[1] for key in ("sys-x", "sys-y")} == {rules_version.RULES_VERSION}

    again = _command(database_url, "--all")
    assert again.returncode == 0, again.stderr
    assert "2 answers stored" in again.stdout


@pytest.mark.slow
def test_the_reevaluate_command_refuses_a_batch_of_nothing(database_url: str) -> None:
    finished = _command(database_url, "--batch", "0")
    assert finished.returncode == 2
    assert "--batch must be at least 1" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_every_control_is_in_the_golden_answers() -> None:
    controls = {control["control"] for control in _golden_evaluations()[0]["controls"]}
    assert controls == set(CONTROL_KEYS)
