"""A real OIDC issuer for tests: signing keys generated here, their JWKS and discovery
document served over HTTP by pytest-httpserver, and tokens minted with them."""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

AUDIENCE = "readiness"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
ALGORITHM_OF = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@cache
def _issued_key(path: str, kid: str, kind: str, nth: int) -> PrivateKey:
    """The `nth` key of that kid and kind at the issuer at `path`, made once per process: an
    RSA key takes tens of milliseconds to make, and every test sets up its issuers anew.
    Distinct for every issuer, kid, kind and key added again under the same kid."""
    return new_key(kind)


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(ALGORITHM_OF[_kind(key)])
    document: dict[str, Any] = json.loads(algorithm.to_jwk(key.public_key()))
    return {**document, "kid": kid, "use": "sig"}


def _kind(key: PrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ec"
    return "ed25519"


@dataclass
class Issuer:
    """One issuer at `path` on the server: its keys by kid, the ones it publishes, and
    every request made for them."""

    server: HTTPServer
    path: str
    keys: dict[str, PrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    added: Counter[tuple[str, str]] = field(default_factory=Counter)
    jwks_requests: int = 0
    discovery_requests: int = 0
    down: bool = False

    @property
    def url(self) -> str:
        return self.server.url_for(self.path).rstrip("/")

    @property
    def jwks_uri(self) -> str:
        return f"{self.url}/jwks"

    def serve(self) -> "Issuer":
        self.server.expect_request(
            f"{self.path}/.well-known/openid-configuration"
        ).respond_with_handler(self._discovery)
        self.server.expect_request(f"{self.path}/jwks").respond_with_handler(self._jwks)
        return self

    def add_key(self, kid: str, kind: str = "rsa", *, publish: bool = True) -> PrivateKey:
        nth = self.added[(kid, kind)]
        self.added[(kid, kind)] += 1
        key = self.keys[kid] = _issued_key(self.path, kid, kind, nth)
        if publish:
            self.published.append(kid)
        return key

    def _discovery(self, _request: Request) -> Response:
        self.discovery_requests += 1
        if self.down:
            return Response("down", status=503)
        document = {"issuer": self.url, "jwks_uri": self.jwks_uri}
        return Response(json.dumps(document), content_type="application/json")

    def _jwks(self, _request: Request) -> Response:
        self.jwks_requests += 1
        if self.down:
            return Response("down", status=503)
        keys = [public_jwk(self.keys[kid], kid) for kid in self.published]
        return Response(json.dumps({"keys": keys}), content_type="application/json")

    def token(
        self,
        now: datetime,
        *,
        kid: str = "k1",
        lifetime: timedelta = timedelta(minutes=10),
        audience: str = AUDIENCE,
        issuer: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = self.keys[kid]
        payload = {
            "iss": issuer or self.url,
            "aud": audience,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
            **claims,
        }
        return jwt.encode(
            {name: value for name, value in payload.items() if value is not None},
            key,
            algorithm=ALGORITHM_OF[_kind(key)],
            headers={"kid": kid, **(headers or {})},
        )


def github_claims(
    repository: str = "acme/claims-triage",
    *,
    ref: str = "refs/heads/main",
    environment: str | None = "production",
) -> dict[str, Any]:
    """Claims shaped like a GitHub Actions job's OIDC token."""
    owner = repository.split("/")[0]
    subject = (
        f"repo:{repository}:environment:{environment}"
        if environment
        else (f"repo:{repository}:ref:{ref}")
    )
    return {
        "sub": subject,
        "repository": repository,
        "repository_owner": owner,
        "ref": ref,
        "environment": environment,
        "workflow": "promote",
        "actor": "octocat",
        "run_id": "4242",
    }


def kubernetes_claims(namespace: str = "claims-ml", account: str = "trainer") -> dict[str, Any]:
    """Claims shaped like a Kubernetes service account's projected token."""
    return {
        "sub": f"system:serviceaccount:{namespace}:{account}",
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": account, "uid": "8f1c2b6e-0000-4000-8000-000000000001"},
        },
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
