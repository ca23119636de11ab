"""One question, one answer: the same (system, stage, release) asked through the API's gate
check and transition, the `readiness` command, the GitHub Action's gate step, a Kubernetes
admission review and an MLflow alias gets the same verdict, since every one of them asks the
lifecycle's one rule (app.lifecycle.service.judge_gate)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.controls.catalogue import EVIDENCE_CONTROLS
from tests.cli.conftest import CliRunner, Service
from tests.cli.test_action import run_gate_step
from tests.conftest import FakeClock
from tests.factories import system_body
from tests.integrations.kubernetes.reviews import deployment, gate, review
from tests.integrations.mlflow.conftest import SECRET, WEBHOOK, alias_data, delivery

# The aliases MLflow maps to stages by default.
ALIAS = {"production": "champion", "pilot": "challenger"}


@dataclass(frozen=True)
class Case:
    """A system brought to `stage` by releases `history` (each a transition naming it), asked
    whether `release` may enter `target`."""

    name: str
    tier: str
    history: tuple[tuple[str, str], ...]
    target: str
    release: str
    allowed: bool
    tested: str | None = None  # the release its testing evidence names (None: every one)
    not_met: str | None = None  # a control whose evidence says not met since the last move
    retired: bool = False


CASES = [
    Case("first-move", "minimal", (), "production", "1.0", allowed=True),
    Case("next-release", "limited", (("production", "1.0"),), "production", "1.1", True),
    Case("same-release", "limited", (("production", "1.0"),), "production", "1.0", True),
    Case(
        "untested-release",
        "limited",
        (("production", "1.0"),),
        "production",
        "1.1",
        allowed=False,
        tested="1.0",
    ),
    Case(
        "tested-release",
        "limited",
        (("production", "1.0"),),
        "production",
        "1.1",
        allowed=True,
        tested="1.1",
    ),
    Case(
        "gate-closed",
        "limited",
        (("production", "1.0"),),
        "production",
        "1.1",
        allowed=False,
        not_met="data_rules",
    ),
    Case("pilot-release", "limited", (("pilot", "0.9"),), "pilot", "0.10", allowed=True),
    Case("retired", "minimal", (), "production", "2.0", allowed=False, retired=True),
]


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"readiness_mlflow_webhook_secret": SECRET}


def prepare(http: httpx.Client, case: Case, key: str, model: str) -> None:
    """The case's system, linked to the MLflow model `model`."""

    def record(control: str, **evidence: Any) -> None:
        answer = http.put(f"/v1/systems/{key}/evidence/{control}", json=evidence)
        assert answer.status_code == 200, answer.text

    def move(**body: Any) -> None:
        moved = http.post(f"/v1/systems/{key}/transitions", json={**body, "reason": "setup"})
        assert moved.status_code == 201, moved.text

    body = system_body(key=key, tier=case.tier, external_ref=f"mlflow:models/{model}")
    made = http.post("/v1/systems", json=body)
    assert made.status_code == 201, made.text
    # A person confirmed the tier (the admin key here): the production gate asks for it.
    confirmed = http.post(
        f"/v1/systems/{key}/classification", json={"tier": made.json()["risk_tier"]}
    )
    assert confirmed.status_code == 201, confirmed.text
    for control in EVIDENCE_CONTROLS:
        if control != "testing_evidence" or not case.tested:
            record(control, status="met")
    # A pipeline that names releases tests each before it moves, and the one asked about.
    for stage, version in case.history:
        if case.tested:
            record("testing_evidence", status="met", release=version)
        move(to_stage=stage, release={"version": version})
    if case.tested and case.tested not in {version for _, version in case.history}:
        record("testing_evidence", status="met", release=case.tested)
    if case.not_met:  # since the last move
        record(case.not_met, status="not_met")
    if case.retired:
        move(to_stage="retired")


def verdicts(
    case: Case, service: Service, cli: CliRunner, clock: FakeClock, tmp_path: Path
) -> dict[str, bool]:
    """Each way of asking, on twin systems: the ones that record a move ask last."""
    key, model = case.name, f"model-{case.name}"
    with service.http("admin") as admin:
        prepare(admin, case, key, model)
    found: dict[str, bool] = {}
    with service.http("pipeline") as pipeline:
        checked = pipeline.post(
            f"/v1/systems/{key}/gate-checks",
            json={"target_stage": case.target, "release": {"version": case.release}},
        )
        assert checked.status_code == 200, checked.text
        found["api gate check"] = checked.json()["allowed"]

    run = cli("gate", key, "--stage", case.target, "--release", case.release, "--format", "json")
    assert run.code in (0, 1), run.stderr
    found["readiness gate"] = run.code == 0 and run.json()["allowed"]

    step = run_gate_step(
        {
            "url": service.url,
            "token": service.tokens["pipeline"],
            "system": key,
            "stage": case.target,
            "release": case.release,
        },
        tmp_path,
        tmp_path / f"{key}-summary.md",
    )
    assert step.code in (0, 1), step.stderr
    found["github action"] = step.code == 0

    document = review(deployment(annotations=gate(key, case.target, case.release)))
    with service.http("viewer") as viewer:
        admitted = viewer.post("/v1/integrations/kubernetes/admission", json=document)
    assert admitted.status_code == 200, admitted.text
    found["kubernetes admission"] = admitted.json()["response"]["allowed"]

    with service.http("pipeline") as pipeline:
        moved = pipeline.post(
            f"/v1/systems/{key}/transitions",
            json={
                "to_stage": case.target,
                "reason": "one answer",
                "release": {"version": case.release},
            },
        )
    assert moved.status_code in (200, 201, 409), moved.text
    found["api transition"] = moved.status_code in (200, 201)

    twin = f"{key}-ml"
    with service.http("admin") as admin:
        prepare(admin, case, twin, f"{model}-ml")
    sent = delivery(now=clock.now, data=alias_data(ALIAS[case.target], case.release, f"{model}-ml"))
    answered = httpx.post(f"{service.url}{WEBHOOK}", content=sent.body, headers=sent.headers)
    assert answered.status_code == 200, answered.text
    found["mlflow alias"] = answered.json()["outcome"] == "allowed"
    return found


@pytest.mark.slow
def test_every_integration_gives_the_same_answer(
    service: Service, cli: CliRunner, clock: FakeClock, tmp_path: Path
) -> None:
    table = {case.name: verdicts(case, service, cli, clock, tmp_path) for case in CASES}
    expected = {case.name: dict.fromkeys(table[case.name], case.allowed) for case in CASES}
    assert table == expected, json.dumps(table, indent=1)


@pytest.mark.slow
def test_recording_the_current_release_through_any_of_them_records_nothing_new(
    service: Service, cli: CliRunner, clock: FakeClock, tmp_path: Path
) -> None:
    case = next(case for case in CASES if case.name == "same-release")
    verdicts(case, service, cli, clock, tmp_path)
    for key in (case.name, f"{case.name}-ml"):
        transitions = service.get(f"/v1/systems/{key}/transitions")["items"]
        assert [(row["to_stage"], row["release"]["version"]) for row in transitions] == [
            ("production", "1.0")
        ]
        assert [
            item["version"] for item in service.get(f"/v1/systems/{key}/releases")["items"]
        ] == ["1.0"]
