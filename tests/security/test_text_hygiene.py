"""Text a reader is shown must read as it is stored: no Unicode bidirectional controls in any
string of any body (a justification that displays in another order than it was recorded), an
evidence `uri` that is an http(s) link and nothing a browser would run, and team names that
are slugs, so one team cannot be spelt two ways that scope apart."""

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.auth.oidc import load_providers
from tests.factories import make_system, system_body
from tests.security.bodies import (
    BASE_BODIES,
    DOCUMENT,
    SCHEMAS,
    Leaf,
    field_errors,
    leaves,
    request_schema,
    url,
    with_value,
)

Headers = dict[str, str]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


def _string_leaves() -> list[Any]:
    found = []
    for (method, path), body in BASE_BODIES.items():
        operation = DOCUMENT["paths"][path][method.lower()]
        for leaf in leaves(SCHEMAS, request_schema(operation), body):
            if leaf.kind == "string" and isinstance(leaf.value, str):
                found.append(pytest.param(method, path, leaf, id=f"{method} {path} {leaf.field}"))
    return found


@pytest.mark.parametrize(("method", "path", "leaf"), _string_leaves())
def test_a_bidi_override_in_any_string_of_any_body_is_422(
    client: TestClient, admin: Headers, method: str, path: str, leaf: Leaf
) -> None:
    # "Approved" with a right-to-left override, as a reviewer's screen would mislead them.
    value = leaf.value[:1] + "\u202e" + leaf.value[1:]
    body = with_value(BASE_BODIES[(method, path)], leaf.path, value)
    errors = field_errors(client.request(method, url(path), json=body, headers=admin))
    assert any("bidirectional" in error["message"] for error in errors), errors
    assert any(leaf.field in error["message"] for error in errors), errors


@pytest.mark.parametrize("control", BIDI)
def test_every_bidi_control_is_refused_in_free_text(
    client: TestClient, admin: Headers, control: str
) -> None:
    body = system_body(key="drafty", description=f"Drafts {control}release notes")
    errors = field_errors(client.post("/v1/systems", json=body, headers=admin))
    assert "description" in errors[0]["message"]
    assert client.get("/v1/systems/drafty", headers=admin).status_code == 404


def test_a_bidi_control_in_a_map_key_is_refused(client: TestClient, admin: Headers) -> None:
    body = system_body(key="drafty", labels={"dom\u2067ain": "claims"})
    errors = field_errors(client.post("/v1/systems", json=body, headers=admin))
    assert "bidirectional" in errors[0]["message"]


def test_text_in_other_scripts_is_still_taken(client: TestClient, admin: Headers) -> None:
    # Right-to-left text itself is fine: only the invisible controls are refused.
    body = system_body(key="drafty", description="يصوغ ملاحظات الإصدار; rédige les notes")
    assert client.post("/v1/systems", json=body, headers=admin).status_code == 201


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "ftp://files.example.com/report.pdf",
        "//evil.example.com/x",
        "wiki/training",
        "https://",
    ],
)
def test_an_evidence_uri_that_is_not_http_is_422_naming_the_field(
    client: TestClient, admin: Headers, uri: str
) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    response = client.put(
        "/v1/systems/drafty/evidence/training", json={"status": "met", "uri": uri}, headers=admin
    )
    assert [error["field"] for error in field_errors(response)] == ["uri"]
    listed = client.get("/v1/systems/drafty/evidence", headers=admin)
    assert listed.status_code == 200
    assert uri not in listed.text


@pytest.mark.parametrize(
    "uri",
    ["https://wiki.example.com/training?x=1#top", "http://intranet/runs/81f3", "HTTPS://A.B/"],
)
def test_an_http_evidence_uri_is_taken(client: TestClient, admin: Headers, uri: str) -> None:
    make_system(client, admin, key="drafty", tier="minimal")
    response = client.put(
        "/v1/systems/drafty/evidence/training", json={"status": "met", "uri": uri}, headers=admin
    )
    assert response.status_code in (200, 201), response.text
    assert response.json()["uri"] == uri


BAD_TEAMS = [
    "Claims-Platform",
    "claims platform",
    "-claims",
    ".claims",
    "cl\u0430ims",  # a Cyrillic a (U+0430): looks like "claims", is another team
    "a" * 64,
    "",
    "claims/platform",
]


@pytest.mark.parametrize("team", BAD_TEAMS)
def test_an_owner_team_that_is_not_a_slug_is_422(
    client: TestClient, admin: Headers, team: str
) -> None:
    body = system_body(key="drafty")
    body["owner"] = {"team": team, "contact": "x@example.com"}
    errors = field_errors(client.post("/v1/systems", json=body, headers=admin))
    assert "owner.team" in [error["field"] for error in errors]

    make_system(client, admin, key="kept")
    patched = client.patch("/v1/systems/kept", json={"owner": {"team": team}}, headers=admin)
    assert "owner.team" in [error["field"] for error in field_errors(patched)]


@pytest.mark.parametrize("team", BAD_TEAMS)
def test_an_api_key_team_that_is_not_a_slug_is_422(
    client: TestClient, admin: Headers, team: str
) -> None:
    response = client.post(
        "/v1/api-keys", json={"name": "ci", "role": "pipeline", "teams": [team]}, headers=admin
    )
    assert "teams.0" in [error["field"] for error in field_errors(response)]


@pytest.mark.parametrize("team", ["claims-platform", "a", "0", "team.v2_x", "a" * 63])
def test_slug_team_names_are_taken(client: TestClient, admin: Headers, team: str) -> None:
    body = system_body(key="drafty")
    body["owner"] = {"team": team, "contact": "x@example.com"}
    assert client.post("/v1/systems", json=body, headers=admin).status_code == 201
    response = client.post(
        "/v1/api-keys", json={"name": "ci", "role": "pipeline", "teams": [team]}, headers=admin
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("team", ["Claims-Platform", "claims platform"])
def test_an_oidc_rule_team_that_is_not_a_slug_stops_the_config(tmp_path: Path, team: str) -> None:
    config = [
        {
            "issuer": "https://idp.example.com",
            "audience": "readiness",
            "rules": [{"claims": {"sub": "ci"}, "role": "pipeline", "teams": [team]}],
        }
    ]
    with pytest.raises(ValueError, match="teams"):
        load_providers(json.dumps(config))
