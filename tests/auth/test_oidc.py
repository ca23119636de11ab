"""OIDC identities beside API keys: tokens from a real local issuer (keys generated here,
JWKS served over HTTP), GitHub Actions- and Kubernetes-shaped claims, claim rules, every
kind of bad token, key fetching and caching under the injected clock."""

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer

from app.config import Settings
from app.main import create_app
from tests.auth.oidc_issuer import AUDIENCE, Issuer, bearer, github_claims, kubernetes_claims
from tests.conftest import FakeClock
from tests.factories import make_system, problem, record_evidence


@pytest.fixture
def github(httpserver: HTTPServer) -> Issuer:
    issuer = Issuer(httpserver, "/github").serve()
    issuer.add_key("k1", "rsa")
    return issuer


@pytest.fixture
def kubernetes(httpserver: HTTPServer) -> Issuer:
    issuer = Issuer(httpserver, "/kubernetes").serve()
    issuer.add_key("k1", "ec")
    return issuer


def providers(github: Issuer, kubernetes: Issuer) -> list[dict[str, Any]]:
    return [
        {
            # Keys found through the issuer's discovery document.
            "issuer": github.url,
            "audience": AUDIENCE,
            "rules": [
                {
                    "claims": {"repository": "acme/claims-*", "ref": "refs/heads/main"},
                    "role": "pipeline",
                    "teams": ["claims-platform"],
                    "name_claim": "repository",
                },
                {
                    # An environment means something only with the repository it lives in.
                    "claims": {"repository": "acme/risk-reviews", "environment": "risk-office"},
                    "role": "approver",
                },
                {
                    "claims": {"repository": "acme/claims-*", "ref": "refs/heads/feature/*"},
                    "role": "viewer",
                },
                {
                    "claims": {"repository": "acme/platform-*"},
                    "role": "pipeline",
                    "teams_claim": "teams",
                },
            ],
        },
        {
            # Keys at a given address, no discovery.
            "issuer": kubernetes.url,
            "audience": AUDIENCE,
            "jwks_uri": kubernetes.jwks_uri,
            "rules": [
                {
                    "claims": {"sub": "system:serviceaccount:claims-ml:*"},
                    "role": "pipeline",
                    "teams": ["claims-platform"],
                },
                {"claims": {"sub": "system:serviceaccount:monitoring:*"}, "role": "viewer"},
                {
                    "claims": {"sub": "system:serviceaccount:claims-risk:*"},
                    "role": "approver",
                    "teams": ["claims-platform"],
                },
                {
                    # Teams from a claim these tokens do not carry: none at all.
                    "claims": {"sub": "system:serviceaccount:risk:*"},
                    "role": "approver",
                    "teams_claim": "teams",
                },
            ],
        },
    ]


@pytest.fixture
def app_settings(github: Issuer, kubernetes: Issuer) -> dict[str, Any]:
    return {"readiness_oidc_config": json.dumps(providers(github, kubernetes))}


def test_a_github_job_records_evidence_and_its_actor_shows_issuer_and_subject(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    token = github.token(clock.now, **github_claims("acme/claims-triage"))

    response = client.put(
        "/v1/systems/claims-triage/evidence/monitoring",
        json={"status": "met", "uri": "https://grafana.example.com/d/claims"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    assert response.json()["recorded_by"] is None  # no API key recorded it

    events = client.get("/v1/events", params={"type": "evidence.recorded"}, headers=admin).json()[
        "items"
    ]
    assert events[-1]["actor"] == {
        "kind": "oidc",
        "id": None,
        "name": "acme/claims-triage",
        "issuer": github.url,
        "subject": "repo:acme/claims-triage:environment:production",
    }


def test_a_kubernetes_service_account_reads_and_writes_within_its_team(
    client: TestClient, admin: dict[str, str], kubernetes: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    make_system(
        client,
        admin,
        key="payments-fraud",
        owner={"team": "payments", "contact": "payments@example.com"},
    )
    token = kubernetes.token(clock.now, **kubernetes_claims("claims-ml", "trainer"))

    assert (
        client.get("/v1/systems/payments-fraud/readiness", headers=bearer(token)).status_code == 200
    )
    own = client.put(
        "/v1/systems/claims-triage/evidence/data_quality",
        json={"status": "met"},
        headers=bearer(token),
    )
    assert own.status_code == 200, own.text
    other = client.put(
        "/v1/systems/payments-fraud/evidence/data_quality",
        json={"status": "met"},
        headers=bearer(token),
    )
    body = problem(other, 403, "out-of-scope")
    assert body["owner_team"] == "payments"
    assert body["teams"] == ["claims-platform"]


def test_a_viewer_identity_cannot_write(
    client: TestClient, admin: dict[str, str], kubernetes: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    token = kubernetes.token(clock.now, **kubernetes_claims("monitoring", "prometheus"))
    assert client.get("/v1/systems/claims-triage", headers=bearer(token)).status_code == 200
    response = client.put(
        "/v1/systems/claims-triage/evidence/data_quality",
        json={"status": "met"},
        headers=bearer(token),
    )
    assert problem(response, 403, "forbidden")["required_role"] == "pipeline"


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
def test_rs256_es256_and_eddsa_tokens_are_accepted(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock, kind: str
) -> None:
    make_system(client, admin, key="claims-triage")
    github.add_key("k2", kind)
    token = github.token(clock.now, kid="k2", **github_claims())
    assert client.get("/v1/systems/claims-triage", headers=bearer(token)).status_code == 200


def test_a_platform_wide_approver_identity_approves_and_is_named_on_the_approval(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage", tier="high")
    token = github.token(clock.now, **github_claims("acme/risk-reviews", environment="risk-office"))
    response = client.post(
        "/v1/systems/claims-triage/approvals",
        json={"target_stage": "production", "decision": "approve"},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    approver = response.json()["approver"]
    assert approver["kind"] == "oidc"
    assert approver["issuer"] == github.url
    assert approver["subject"] == "repo:acme/risk-reviews:environment:risk-office"
    listed = client.get("/v1/systems/claims-triage/approvals", headers=admin).json()["items"]
    assert listed[0]["approver"] == approver


def test_teams_can_come_from_a_claim(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    token = github.token(
        clock.now, **github_claims("acme/platform-tools"), teams=["search", "claims-platform"]
    )
    assert (
        client.put(
            "/v1/systems/claims-triage/evidence/training",
            json={"status": "met"},
            headers=bearer(token),
        ).status_code
        == 200
    )
    # The same rule without the claim: no team at all, so no write anywhere.
    bare = github.token(clock.now, **github_claims("acme/platform-tools"))
    response = client.put(
        "/v1/systems/claims-triage/evidence/training", json={"status": "met"}, headers=bearer(bare)
    )
    assert problem(response, 403, "out-of-scope")["teams"] == []


def test_a_token_no_rule_matches_gets_403(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    token = github.token(clock.now, **github_claims("acme/claims-triage", ref="refs/tags/v1"))
    response = client.get("/v1/systems/claims-triage", headers=bearer(token))
    body = problem(response, 403, "no-role-for-identity")
    assert body["subject"] == "repo:acme/claims-triage:environment:production"


def _part(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned(payload: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(payload)}."


def _hmac_signed(payload: dict[str, Any], secret: bytes) -> str:
    # By hand: PyJWT itself refuses to use a public key as an HMAC secret.
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'})}.{_part(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


def _bad_tokens(github: Issuer, clock: FakeClock) -> dict[str, str]:
    now = clock.now
    claims = github_claims()
    stranger = Issuer(github.server, "/stranger")
    stranger.add_key("k1")
    forged = Issuer(github.server, "/forged")
    forged.add_key("k1")
    public_pem = (
        github.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    payload = {
        "iss": github.url,
        "aud": AUDIENCE,
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        **claims,
    }
    return {
        # Signed by another key under the issuer's name and kid.
        "bad signature": forged.token(now, issuer=github.url, **claims),
        "unknown issuer": stranger.token(now, **claims),
        "wrong audience": github.token(now, audience="another-service", **claims),
        "expired past the leeway": github.token(
            now - timedelta(minutes=10), lifetime=timedelta(minutes=8, seconds=59), **claims
        ),
        "not valid yet": github.token(now + timedelta(minutes=5), **claims),
        "alg none": _unsigned(payload),
        # The classic confusion: the issuer's public key used as an HMAC secret.
        "HS256 with the public key": _hmac_signed(payload, public_pem),
        "unknown kid": github.token(now, headers={"kid": "k9"}, **claims),
        "no subject": github.token(now, **{**claims, "sub": None}),
        "no expiry": jwt.encode(
            {name: value for name, value in payload.items() if name != "exp"},
            github.keys["k1"],
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
        "tampered payload": _tampered(github.token(now, **claims)),
        "garbage with dots": "not.a.token",
    }


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["repository"] = "acme/claims-admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


BAD = [
    "bad signature",
    "unknown issuer",
    "wrong audience",
    "expired past the leeway",
    "not valid yet",
    "alg none",
    "HS256 with the public key",
    "unknown kid",
    "no subject",
    "no expiry",
    "tampered payload",
    "garbage with dots",
]


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize(
    "path", ["/v1/systems/claims-triage", "/v1/systems/claims-triage/readiness"]
)
def test_bad_tokens_get_401_problems(
    client: TestClient,
    admin: dict[str, str],
    github: Issuer,
    clock: FakeClock,
    case: str,
    path: str,
) -> None:
    make_system(client, admin, key="claims-triage")
    token = _bad_tokens(github, clock)[case]
    response = client.get(path, headers=bearer(token))
    problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_within_the_leeway_is_accepted_and_remembered_only_until_it_expires(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    token = github.token(clock.now, lifetime=timedelta(minutes=1), **github_claims())
    path = "/v1/systems/claims-triage/readiness"
    assert client.get(path, headers=bearer(token)).status_code == 200
    clock.advance(seconds=60 + 59)  # past exp, within the 60 s leeway
    assert client.get(path, headers=bearer(token)).status_code == 200
    clock.advance(seconds=2)
    problem(client.get(path, headers=bearer(token)), 401, "unauthorized")


def test_keys_are_fetched_once_and_new_keys_found_on_an_unknown_kid_at_most_once_a_minute(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    path = "/v1/systems/claims-triage"
    for run in range(5):  # a new token per job, the keys fetched once
        token = github.token(clock.now, **{**github_claims(), "run_id": str(run)})
        assert client.get(path, headers=bearer(token)).status_code == 200
    assert (github.discovery_requests, github.jwks_requests) == (1, 1)

    # The issuer rotates: a token signed with the new key fetches the keys again (the
    # last fetch was over a minute ago).
    clock.advance(seconds=61)
    github.add_key("k2")
    rotated = github.token(clock.now, kid="k2", **github_claims())
    assert client.get(path, headers=bearer(rotated)).status_code == 200
    assert github.jwks_requests == 2

    # Made-up kids within the minute do not reach the issuer again.
    for kid in ("k7", "k8", "k9"):
        github.add_key(kid, publish=False)
        made_up = github.token(clock.now, kid=kid, **github_claims())
        problem(client.get(path, headers=bearer(made_up)), 401, "unauthorized")
    assert github.jwks_requests == 2

    # A key published meanwhile is found once the minute has passed.
    github.published.append("k9")
    late = github.token(clock.now, kid="k9", **github_claims())
    problem(client.get(path, headers=bearer(late)), 401, "unauthorized")
    clock.advance(seconds=61)
    late = github.token(clock.now, kid="k9", **github_claims())
    assert client.get(path, headers=bearer(late)).status_code == 200
    assert github.jwks_requests == 3


def test_an_issuer_that_cannot_be_reached_answers_503(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    github.down = True
    token = github.token(clock.now, **github_claims())
    response = client.get("/v1/systems/claims-triage", headers=bearer(token))
    problem(response, 503, "identity-provider-unavailable")
    assert int(response.headers["retry-after"]) > 0
    # Back up: found again after the short retry interval.
    github.down = False
    clock.advance(seconds=6)
    assert client.get("/v1/systems/claims-triage", headers=bearer(token)).status_code == 200


def test_api_keys_keep_working_beside_tokens(
    client: TestClient, admin: dict[str, str], pipeline: dict[str, str]
) -> None:
    make_system(client, admin, key="claims-triage")
    record_evidence(client, pipeline, key="claims-triage", control="monitoring")


def test_a_retried_post_replays_for_the_same_identity_with_a_fresh_token(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    body = {"target_stage": "pilot"}
    url = "/v1/systems/claims-triage/gate-checks"
    first = client.post(
        url,
        json=body,
        headers={**bearer(github.token(clock.now, **github_claims())), "Idempotency-Key": "run-7"},
    )
    assert first.status_code == 200, first.text
    clock.advance(seconds=30)
    again = client.post(
        url,
        json=body,
        headers={
            **bearer(github.token(clock.now, **{**github_claims(), "run_id": "4243"})),
            "Idempotency-Key": "run-7",
        },
    )
    assert again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]


def _settings(tmp_path: Path, config: str) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'oidc.db'}", readiness_oidc_config=config)


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ("[{", "not a valid provider list"),
        ('[{"issuer": "https://a", "audience": "r", "rules": []}]', "rules"),
        (
            '[{"issuer": "https://a", "audience": "r",'
            ' "rules": [{"role": "admin", "teams": ["x"]}]}]',
            "cannot be scoped",
        ),
        (
            '[{"issuer": "https://a", "audience": "r", "rules": [{"role": "owner"}]}]',
            "role",
        ),
        (
            '[{"issuer": "https://a", "audience": "r", "rules": [{"role": "viewer"}]},'
            ' {"issuer": "https://a", "audience": "s", "rules": [{"role": "viewer"}]}]',
            "names an issuer twice",
        ),
        ("/no/such/oidc.json", "cannot be read"),
        (
            '[{"issuer": "https://a", "audience": "r", "rules": [{"role": "pipeline"}]}]',
            "must match at least one claim",
        ),
        (
            '[{"issuer": "http://idp.example.com", "audience": "r",'
            ' "rules": [{"role": "viewer"}]}]',
            "not an https URL",
        ),
        (
            '[{"issuer": "https://a", "audience": "r", "jwks_uri": "http://keys.example.com",'
            ' "rules": [{"role": "viewer"}]}]',
            "not an https URL",
        ),
    ],
)
def test_a_bad_oidc_config_stops_the_process_with_the_reason(
    tmp_path: Path, config: str, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        create_app(_settings(tmp_path, config))


def test_the_config_can_be_a_file(tmp_path: Path, github: Issuer, kubernetes: Issuer) -> None:
    path = tmp_path / "oidc.json"
    path.write_text(json.dumps(providers(github, kubernetes)))
    app = create_app(_settings(tmp_path, str(path)))
    assert app.state.identities.oidc is not None


def test_jobs_that_share_a_subject_but_not_their_rights_never_share_answers(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    # GitHub's sub names the repository and environment, not the branch.
    make_system(client, admin, key="claims-triage")
    url = "/v1/systems/claims-triage/gate-checks"
    feature = github.token(clock.now, **github_claims(ref="refs/heads/feature/x"))
    main = github.token(clock.now, **github_claims())
    refused = client.post(
        url, json={"target_stage": "pilot"}, headers={**bearer(feature), "Idempotency-Key": "k"}
    )
    assert refused.status_code == 403
    allowed = client.post(
        url, json={"target_stage": "pilot"}, headers={**bearer(main), "Idempotency-Key": "k"}
    )
    assert allowed.status_code == 200, allowed.text
    assert "idempotent-replayed" not in allowed.headers


def test_a_subject_too_long_to_keep_whole_is_refused(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage")
    claims = {**github_claims(), "sub": "repo:acme/claims-triage:" + "x" * 500}
    response = client.get(
        "/v1/systems/claims-triage", headers=bearer(github.token(clock.now, **claims))
    )
    problem(response, 401, "unauthorized")


def test_an_unknown_issuer_is_quoted_short(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    token = github.token(clock.now, issuer="https://" + "i" * 5000, **github_claims())
    response = client.get("/v1/controls", headers=bearer(token))
    assert len(problem(response, 401, "unauthorized")["detail"]) < 300


def test_the_issuer_stays_unavailable_until_its_keys_come(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    github.down = True
    token = github.token(clock.now, **github_claims())
    for _ in range(2):  # the second within the retry interval: still 503, not 401
        problem(
            client.get("/v1/controls", headers=bearer(token)), 503, "identity-provider-unavailable"
        )
        clock.advance(seconds=2)
    assert github.discovery_requests == 1


@pytest.mark.parametrize(
    "namespace",
    [
        "claims-risk",  # scoped to the owner team
        "risk",  # scoped by a teams_claim these tokens lack: no team, so not known outside
    ],
)
def test_approver_identities_not_known_to_stand_outside_the_owner_team_are_refused(
    client: TestClient, admin: dict[str, str], kubernetes: Issuer, clock: FakeClock, namespace: str
) -> None:
    make_system(client, admin, key="claims-triage", tier="high")
    token = kubernetes.token(clock.now, **kubernetes_claims(namespace, "approver"))
    response = client.post(
        "/v1/systems/claims-triage/approvals",
        json={"target_stage": "production", "decision": "approve"},
        headers=bearer(token),
    )
    problem(response, 403, "not-independent")


def test_remembered_tokens_are_bounded(github: Issuer, clock: FakeClock) -> None:
    from app.auth.oidc import OidcVerifier, load_providers

    config = [{"issuer": github.url, "audience": AUDIENCE, "rules": [{"role": "viewer"}]}]
    verifier = OidcVerifier(load_providers(json.dumps(config)), cache_size=3)
    try:
        tokens = [
            github.token(clock.now, **{**github_claims(), "run_id": str(run)}) for run in range(5)
        ]
        for token in tokens:
            assert verifier.verify(token, now=clock.now) is not None
        # The oldest make room for the newest.
        remembered = [token for token in tokens if verifier.cached(token, now=clock.now)]
        assert remembered == tokens[-3:]
    finally:
        verifier.close()


def test_an_identity_is_one_person_across_its_tokens_and_is_never_marked_revoked(
    client: TestClient, admin: dict[str, str], github: Issuer, clock: FakeClock
) -> None:
    make_system(client, admin, key="claims-triage", tier="critical")  # production: 2
    claims = github_claims("acme/risk-reviews", environment="risk-office")
    url = "/v1/systems/claims-triage/approvals"

    def decide(decision: str) -> None:
        # A fresh token each time, as each job run asks for one.
        clock.advance(minutes=5)
        token = github.token(clock.now, **claims)
        body = {"target_stage": "production", "decision": decision}
        assert client.post(url, json=body, headers=bearer(token)).status_code == 201

    def codes() -> set[str]:
        check = client.post(
            "/v1/systems/claims-triage/gate-checks",
            json={"target_stage": "production"},
            headers=admin,
        )
        return {item["code"] for item in check.json()["blocking"]}

    decide("reject")
    assert "approval_rejected" in codes()
    decide("approve")  # its latest decision: the reject no longer blocks
    decide("approve")
    assert "approval_rejected" not in codes()
    assert "approvals_missing" in codes()  # one person, one approver
    listed = client.get(url, headers=admin).json()["items"]
    assert [(item["decision"], item["revoked"]) for item in listed] == [
        ("approve", False),
        ("approve", False),
        ("reject", False),
    ]
