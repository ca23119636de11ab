"""The Argo Rollouts AnalysisTemplate in deploy/argo: its structure, and its JSONPath read
against the answers of the real app, as Argo would read them.

Argo's web provider evaluates `jsonPath` with Kubernetes' JSONPath (client-go's
util/jsonpath): a template of text and `{...}` expressions. The template's is one expression
and nothing else, `{$.gates.production.ready}`, whose inside is plain JSONPath, so the tests
strip the braces (checking there is nothing to lose) and evaluate it with jsonpath-ng, a
maintained JSONPath library, rather than with a walk of our own."""

import re
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from jsonpath_ng import parse

from app.controls.catalogue import EVIDENCE_CONTROLS
from app.main import app
from tests.deploy.dockerfile import PROJECT_ROOT
from tests.factories import make_system, meet_every_control, record_evidence

TEMPLATE = PROJECT_ROOT / "deploy" / "argo" / "analysis-template.yaml"
READINESS_ROUTE = "/v1/systems/{key}/readiness"
Headers = dict[str, str]


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return loaded


def metric() -> dict[str, Any]:
    (only,) = template()["spec"]["metrics"]
    found: dict[str, Any] = only
    return found


def web() -> dict[str, Any]:
    provider: dict[str, Any] = metric()["provider"]["web"]
    return provider


def json_path() -> Any:
    """The template's JSONPath, without the braces of Kubernetes' template syntax."""
    expression = web()["jsonPath"]
    match = re.fullmatch(r"\{([^{}]+)\}", expression)
    assert match, f"one {{...}} expression and no text around it: {expression!r}"
    return parse(match.group(1))


def read(answer: Any) -> list[Any]:
    """What Argo's `result` would be: the values the JSONPath selects."""
    return [found.value for found in json_path().find(answer)]


def substitute(text: str, args: dict[str, str]) -> str:
    """Argo's `{{args.NAME}}` substitution."""
    return re.sub(r"\{\{\s*args\.([\w-]+)\s*\}\}", lambda match: args[match.group(1)], text)


def test_the_template_is_an_analysis_template_with_a_web_metric() -> None:
    document = template()
    assert document["apiVersion"] == "argoproj.io/v1alpha1"
    assert document["kind"] == "AnalysisTemplate"
    assert document["metadata"]["name"] == "readiness-gate"
    assert set(metric()["provider"]) == {"web"}
    assert web().get("method", "GET") == "GET"
    assert "body" not in web()
    assert web()["jsonPath"] == "{$.gates.production.ready}"
    assert metric()["successCondition"] == "result == true"
    assert "failureCondition" not in metric()


def test_every_arg_is_declared_and_used_and_the_token_comes_from_a_secret() -> None:
    args = {arg["name"]: arg for arg in template()["spec"]["args"]}
    used = set(re.findall(r"\{\{\s*args\.([\w-]+)\s*\}\}", yaml.safe_dump(metric())))
    assert used == set(args)
    token = args["readiness-token"]
    assert "value" not in token  # never inline
    reference = token["valueFrom"]["secretKeyRef"]
    assert set(reference) == {"name", "key"}
    headers = {header["key"]: header["value"] for header in web()["headers"]}
    assert headers["Authorization"] == "Bearer {{args.readiness-token}}"
    assert "value" not in args["system"]  # each Rollout names its own


def test_the_url_is_the_apps_readiness_route_through_the_service() -> None:
    args = {arg["name"]: arg.get("value", "") for arg in template()["spec"]["args"]}
    url = substitute(web()["url"], {**args, "system": "claims-triage", "readiness-token": ""})
    assert url == "http://readiness.readiness.svc/v1/systems/claims-triage/readiness?release="
    route, query = substitute(
        web()["url"], {"readiness-url": "", "system": "{key}", "release": "{release}"}
    ).split("?")
    assert route == READINESS_ROUTE
    assert query == "release={release}"
    operation = app.openapi()["paths"][route]["get"]
    assert operation["x-required-role"] == "viewer"
    assert [param["name"] for param in operation["parameters"] if param["in"] == "query"] == [
        "release"
    ]
    # The JSONPath names a boolean the answer always has (GatesRead.production.ready).
    schemas = app.openapi()["components"]["schemas"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    readiness = schemas[answer["$ref"].rsplit("/", 1)[-1]]
    gates = schemas[readiness["properties"]["gates"]["$ref"].rsplit("/", 1)[-1]]
    gate = schemas[gates["properties"]["production"]["$ref"].rsplit("/", 1)[-1]]
    assert "gates" in readiness["required"]
    assert "production" in gates["required"]
    assert "ready" in gate["required"]
    assert gate["properties"]["ready"]["type"] == "boolean"


def test_the_measurements_stop_a_rollout_at_the_first_not_ready_answer() -> None:
    assert metric()["failureLimit"] == 0
    assert 1 <= metric()["count"] <= 10
    assert re.fullmatch(r"\d+[sm]", metric()["interval"])
    assert 1 <= metric()["consecutiveErrorLimit"] <= metric()["count"]
    assert web()["timeoutSeconds"] <= 30


def _get(client: TestClient, system: str, token: str, release: str = "") -> Any:
    """The request Argo sends for this system, through the test client."""
    args = {"readiness-url": "", "system": system, "readiness-token": token, "release": release}
    headers = {header["key"]: substitute(header["value"], args) for header in web()["headers"]}
    return client.get(substitute(web()["url"], args), headers=headers)


def _secret(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_a_ready_system_reads_true_and_a_not_ready_one_false(
    client: TestClient, admin: Headers, viewer: Headers
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    meet_every_control(client, admin, key="drafty")
    make_system(client, admin, key="lender", tier="high")
    for system, expected in (("drafty", True), ("lender", False)):
        response = _get(client, system, _secret(viewer))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert read(response.json()) == [expected]
        # `result == true` holds for a JSON true only, not for "true" or 1.
        assert read(response.json())[0] is expected


@pytest.mark.parametrize(
    ("case", "status", "problem"),
    [
        ("unknown system", 404, "not-found"),
        ("unknown path", 404, "not-found"),
        ("wrong method", 405, "method-not-allowed"),
        ("bad token", 401, "unauthorized"),
        ("no token", 401, "unauthorized"),
        ("key not valid", 422, "validation-error"),
    ],
)
def test_no_error_answer_reads_as_ready(
    client: TestClient, admin: Headers, viewer: Headers, case: str, status: int, problem: str
) -> None:
    """Every error an analysis can meet at the template's URL is a JSON problem document in
    which the JSONPath finds nothing: Argo records an error, never a success, whatever the
    status it saw. (The statuses themselves are tested where
    they are made: tests/errors/test_errors.py for unknown paths, methods and validation,
    tests/security/test_security.py for 401 on every keyed route, and
    tests/readiness/test_readiness_api.py for an unknown system's readiness.)"""
    make_system(client, admin, key="drafty", tier="minimal")
    meet_every_control(client, admin, key="drafty")
    good = _get(client, "drafty", _secret(viewer))
    assert read(good.json()) == [True]  # what each case below changes one thing of
    url, headers = good.request.url.path, dict(good.request.headers)
    if case == "unknown system":
        response = _get(client, "no-such-system", _secret(viewer))
    elif case == "unknown path":
        response = client.get(url.replace("/readiness", "/readyness"), headers=headers)
    elif case == "wrong method":
        response = client.post(url, headers=headers)
    elif case == "bad token":
        response = _get(client, "drafty", "rdy_not_a_key")
    elif case == "no token":
        response = client.get(url)
    else:
        response = _get(client, "d" * 64, _secret(viewer))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{problem}"
    assert read(body) == []


def test_a_release_reads_as_the_deploy_jobs_gate_check_judges_it(
    client: TestClient, admin: Headers, pipeline: Headers, viewer: Headers
) -> None:
    """The analysis of a rollout of release R reads what a gate check of R answers: a
    release whose testing evidence names only an earlier release is not ready."""
    make_system(client, admin, key="drafty", tier="limited")
    for control in EVIDENCE_CONTROLS:
        tested = {"release": "1.0"} if control == "testing_evidence" else {}
        record_evidence(client, admin, key="drafty", control=control, **tested)
    for release in ("1.0", "1.1", ""):
        response = _get(client, "drafty", _secret(viewer), release)
        assert response.status_code == 200, response.text
        body = {"target_stage": "production"}
        if release:
            body["release"] = {"version": release}  # type: ignore[assignment]
        check = client.post("/v1/systems/drafty/gate-checks", json=body, headers=pipeline)
        assert read(response.json()) == [check.json()["allowed"]], release
    assert read(_get(client, "drafty", _secret(viewer), "1.1").json()) == [False]
