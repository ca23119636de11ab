"""A consumer's first try: generate a Python client from the committed OpenAPI document with
openapi-python-client and drive the main flow through it against the live app, asserting on
the typed results it parses. Generation must be warning-free: a part of the document the
generator cannot handle would silently go missing from every client generated from it."""

import importlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ADMIN_SECRET, project_path

pytestmark = pytest.mark.contract

PACKAGE = "readiness_generated_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    root = tmp_path_factory.mktemp("client")
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(project_path("openapi", "openapi.json")),
            "--output-path",
            str(root / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(project_path("openapi", "python-client.yaml")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # Its post-generation hooks run ruff, from this project's environment.
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(root)},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output, output
    assert "Unable" not in output, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def call(module: ModuleType, operation: str, **kwargs: Any) -> Any:
    """`api.<tag>.<operation>.sync_detailed(...)`, checked to be a 2xx with a parsed body."""
    response = importlib.import_module(f"{module.__name__}.api.{operation}").sync_detailed(**kwargs)
    assert 200 <= response.status_code < 300, (operation, response.status_code, response.content)
    return response.parsed


def test_main_flow_through_a_generated_client(generated: ModuleType, live_server: str) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    admin = generated.AuthenticatedClient(
        base_url=live_server, token=ADMIN_SECRET, raise_on_unexpected_status=True
    )

    # 1. An API key for the pipeline; the secret is in this answer only.
    created = call(
        generated,
        "api_keys.create_api_key",
        client=admin,
        body=models.ApiKeyCreate(name="release-pipeline", role=models.Role.PIPELINE),
    )
    assert isinstance(created, models.ApiKeyCreated)
    assert created.role is models.Role.PIPELINE
    assert created.key.startswith(created.key_prefix)
    assert created.revoked_at is None
    pipeline = generated.AuthenticatedClient(
        base_url=live_server, token=created.key, raise_on_unexpected_status=True
    )

    # 2. A system, registered idempotently: the retry replays the same answer.
    body = models.SystemCreate(
        key="release-notes-drafter",
        name="Release notes drafter",
        purpose="Draft release notes from merged pull requests.",
        scope="Drafts only; a human edits and publishes.",
        owner=models.Owner(team="dev-productivity", contact="devprod@example.com"),
        impact_areas=[models.ImpactArea.DRAFTING],
        oversight=models.Oversight.HUMAN_REVIEWS_ALL,
        labels=models.SystemCreateLabels.from_dict({"repo": "platform"}),
    )
    system = call(
        generated,
        "systems.create_system",
        client=pipeline,
        body=body,
        idempotency_key="register-drafter-1",
    )
    assert isinstance(system, models.SystemRead)
    assert (system.stage, system.risk_tier) == (models.Stage.PROPOSED, models.Tier.MINIMAL)
    assert system.labels.to_dict() == {"repo": "platform"}
    assert isinstance(system.created_at, datetime)
    assert system.created_at.tzinfo is not None
    replay = call(
        generated,
        "systems.create_system",
        client=pipeline,
        body=body,
        idempotency_key="register-drafter-1",
    )
    assert replay.to_dict() == system.to_dict()

    # 3. Evidence for a control.
    evidence = call(
        generated,
        "evidence.record_evidence",
        client=pipeline,
        key=system.key,
        control="training",
        body=models.EvidenceWrite(status=models.EvidenceStatus.MET, summary="Team trained"),
    )
    assert isinstance(evidence, models.EvidenceRead)
    assert (evidence.control, evidence.version, evidence.current) == ("training", 1, True)
    assert evidence.status is models.EvidenceStatus.MET

    # 4. Readiness: a minimal-tier drafter passes the pilot gate at once.
    readiness = call(generated, "readiness.get_readiness", client=pipeline, key=system.key)
    assert isinstance(readiness, models.ReadinessRead)
    assert readiness.system_key == system.key
    assert readiness.gates.pilot.ready is True
    assert readiness.gates.pilot.blocking == []
    assert isinstance(readiness.level, models.Level)
    assert any(
        control.control == "training" and control.status is models.ControlStatus.MET
        for control in readiness.controls
    )

    # 5. Gate check, then the move it allows.
    release = models.Release(version="1.0.0")
    decision = call(
        generated,
        "lifecycle.check_gate",
        client=pipeline,
        key=system.key,
        body=models.GateCheckCreate(target_stage=models.GateStage.PILOT, release=release),
    )
    assert isinstance(decision, models.GateCheckRead)
    assert decision.allowed is True
    assert decision.current_stage is models.Stage.PROPOSED
    assert isinstance(decision.release, models.Release)
    assert decision.release.version == "1.0.0"
    transition = call(
        generated,
        "lifecycle.create_transition",
        client=pipeline,
        key=system.key,
        body=models.TransitionCreate(
            to_stage=models.Stage.PILOT,
            reason="deploy job",
            expected_stage=decision.current_stage,
            release=release,
        ),
    )
    assert isinstance(transition, models.TransitionRead)
    assert (transition.from_stage, transition.to_stage) == (
        models.Stage.PROPOSED,
        models.Stage.PILOT,
    )
    assert transition.gate is models.GateStage.PILOT
    assert isinstance(transition.actor, models.Actor)
    assert transition.actor.id == created.id

    # 6. A pilot with its success criteria declared up front.
    pilot = call(
        generated,
        "pilots.create_pilot",
        client=pipeline,
        key=system.key,
        body=models.PilotCreate(
            name="Two sprints with the platform team",
            planned_end=datetime(2027, 1, 31, tzinfo=UTC),
            criteria=[
                models.CriterionWrite(
                    metric="edit_distance_ratio", op=models.Op.LE, target=0.3, warning=0.5, key=True
                ),
                models.CriterionWrite(
                    metric="minutes_saved_per_release",
                    op=models.Op.GE,
                    target=20,
                    warning=10,
                    weight=2,
                ),
            ],
        ),
    )
    assert isinstance(pilot, models.PilotRead)
    assert pilot.status == "running"
    assert pilot.outcome is None
    assert [criterion.result for criterion in pilot.criteria] == [
        models.CriterionResult.PENDING
    ] * 2

    # 7. A pipeline posts what it measured.
    recorded = call(
        generated,
        "pilots.post_results",
        client=pipeline,
        pilot_id=pilot.id,
        body=models.ResultCreate(
            metrics=models.ResultCreateMetrics.from_dict(
                {"edit_distance_ratio": 0.22, "minutes_saved_per_release": 26, "tokens": 900}
            ),
            sample_size=12,
            source=models.Source(pipeline="release-notes-eval", run_id="118"),
            findings=[models.Finding.MISSING_TRAINING],
        ),
    )
    assert isinstance(recorded, models.ResultRecorded)
    assert recorded.result.pilot_id == pilot.id
    assert recorded.result.unknown_metrics == ["tokens"]
    assert recorded.result.findings == [models.Finding.MISSING_TRAINING]
    assert {c.metric: (c.value, c.result) for c in recorded.evaluation.criteria} == {
        "edit_distance_ratio": (0.22, models.CriterionResult.PASS),
        "minutes_saved_per_release": (26, models.CriterionResult.PASS),
    }
