"""OIDC identities: short-lived JWTs from configured issuers (GitHub Actions, GitLab,
Kubernetes service accounts, a corporate IdP), verified against the issuer's published keys
and mapped to a role and teams by claim rules.

Signatures are checked by PyJWT with `cryptography`; this module decides which issuers,
keys, algorithms and claims count, and remembers verified tokens until they expire, so a
caller polling with one token pays for one signature check, not one per request.
"""

import fnmatch
import logging
import ssl
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

import jwt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from app.auth.roles import ActorKind, Principal, Role
from app.errors import DomainError, NoRoleForIdentity, Unauthorized
from app.schemas import TeamName

if TYPE_CHECKING:
    # Imported where keys are fetched: httpx loads its command line (rich, pygments) with
    # it, a fifth of the service's start-up, which a service without OIDC never needs.
    import httpx

logger = logging.getLogger("app.auth.oidc")

# Asymmetric algorithms only: `none` proves nothing, and an HS* token would be checked
# with a secret the issuer shares with every verifier, or with its public key as one.
ALLOWED_ALGORITHMS = ("RS256", "ES256", "EdDSA")
# Clocks of issuers and replicas differ a little.
LEEWAY = timedelta(seconds=60)
# An unknown `kid` fetches the issuer's keys again (they rotate), at most this often, so a
# stream of made-up key ids cannot make the service hammer the issuer.
REFRESH_ON_UNKNOWN_KID = timedelta(minutes=1)
# Until an issuer's keys were fetched once, a failed fetch is retried this soon.
RETRY_FIRST_FETCH = timedelta(seconds=5)
# Keys are fetched again after this long even when every kid is known: a withdrawn key
# stops verifying within the hour.
KEYS_MAX_AGE = timedelta(hours=1)
FETCH_TIMEOUT_S = 5.0
# Verified tokens remembered per process; past it, expired ones go first, then the oldest.
TOKEN_CACHE_SIZE = 10_000
MAX_NAME = 100
# What records keep of an OIDC identity; a longer one is refused rather than cut, so two
# identities never become one.
MAX_ISSUER = 500
MAX_SUBJECT = 500
# Values from an unverified token are quoted in answers only this far.
MAX_QUOTED = 100


class IdentityProviderUnavailable(DomainError):
    status = 503
    type = "identity-provider-unavailable"
    title = "The token's issuer cannot be reached to verify it"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(RETRY_FIRST_FETCH.total_seconds()))}


class ClaimRule(BaseModel):
    """Claims to match (exact values or shell-style globs), and what a match gives."""

    model_config = ConfigDict(extra="forbid")

    claims: dict[str, str] = Field(
        default_factory=dict, description="Claim name -> value or glob (`repo:acme/*`)."
    )
    role: Role
    teams: list[TeamName] | None = Field(default=None, min_length=1, max_length=50)
    teams_claim: str | None = Field(
        default=None, description="A claim whose value (a string or list of them) is the teams."
    )
    name_claim: str | None = Field(
        default=None, description="The claim that names the identity; default `sub`."
    )

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.teams is not None and self.teams_claim is not None:
            raise ValueError("a rule gives teams or teams_claim, not both")
        if self.role == Role.admin and (self.teams is not None or self.teams_claim is not None):
            raise ValueError("admin identities act for every team and cannot be scoped")
        if not self.claims and self.role != Role.viewer:
            # With a public issuer (GitHub's) that would be every repository on it.
            raise ValueError(f"a rule that gives {self.role.value} must match at least one claim")
        return self

    def matches(self, claims: Mapping[str, Any]) -> bool:
        return all(_claim_matches(claims.get(name), want) for name, want in self.claims.items())


def _claim_matches(value: Any, pattern: str) -> bool:
    if isinstance(value, list):
        return any(_claim_matches(item, pattern) for item in value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    if not isinstance(value, str | int | float):
        return False  # absent, or an object: no glob says what that would mean
    return fnmatch.fnmatchcase(str(value), pattern)


def _secure_url(url: str) -> str:
    """https, or http to this machine only (a local issuer, tests): keys fetched in the clear
    over a network could be swapped on the way."""
    parsed = urlsplit(url)
    loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise ValueError(f"{url!r} is not an https URL")
    return url


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(
        min_length=1, max_length=MAX_ISSUER, description="Exactly the tokens' `iss`, a URL."
    )
    audience: str = Field(min_length=1, description="The `aud` tokens must carry.")
    jwks_uri: str | None = Field(
        default=None,
        description="Where the issuer's keys are; default: its OpenID discovery document.",
    )
    ca_file: FilePath | None = Field(
        default=None,
        description=(
            "PEM certificates to trust for this issuer's HTTPS instead of the usual ones (a"
            " cluster's own CA, say)."
        ),
    )
    rules: list[ClaimRule] = Field(min_length=1)

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _https(cls, url: str | None) -> str | None:
        return _secure_url(url) if url is not None else None


_PROVIDERS = TypeAdapter(list[Provider])


def load_providers(value: str | None) -> list[Provider]:
    """READINESS_OIDC_CONFIG: inline JSON (a list of providers) or the path of a JSON file
    holding it. Unset or empty: no issuer is trusted. Raises ValueError with the reason."""
    if value is None or not value.strip():
        return []
    text = value if value.lstrip().startswith("[") else _read(Path(value.strip()))
    try:
        providers = _PROVIDERS.validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"READINESS_OIDC_CONFIG is not a valid provider list: {exc}") from exc
    issuers = [provider.issuer for provider in providers]
    if len(set(issuers)) != len(issuers):
        raise ValueError("READINESS_OIDC_CONFIG names an issuer twice")
    return providers


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ValueError(
            f"READINESS_OIDC_CONFIG names {str(path)!r}, which cannot be read ({exc.strerror});"
            " give a JSON list of providers or the path of a file holding one"
        ) from exc


def looks_like_jwt(secret: str) -> bool:
    """A compact JWS (three dot-separated parts). API keys have no dots."""
    return secret.count(".") == 2


class IssuerKeys:
    """One issuer's signing keys by `kid`, fetched when first needed and again when a token
    names a key not among them (at most once a minute) or the keys are an hour old."""

    def __init__(self, provider: Provider, http: "httpx.Client") -> None:
        self._provider = provider
        self._http = http
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: datetime | None = None
        self._tried_at: datetime | None = None

    def key_for(self, kid: str | None, *, now: datetime) -> jwt.PyJWK:
        key = self._find(kid)
        if key is not None:
            # Keys an hour old are fetched again by one caller; the others go on with them
            # meanwhile rather than queue behind a slow issuer.
            if self._old(now) and self._lock.acquire(blocking=False):
                try:
                    if self._old(now) and self._may_fetch(now):
                        self._fetch(now)
                finally:
                    self._lock.release()
            return self._find(kid) or key
        with self._lock:  # one fetch at a time; the others find its keys
            key = self._find(kid)
            if key is None and self._may_fetch(now):
                self._fetch(now)
                key = self._find(kid)
        if key is not None:
            return key
        if not self._keys:  # never fetched: the issuer is away, the token may be fine
            raise self._unavailable()
        raise Unauthorized(
            f"The issuer {self._provider.issuer} has no key {_quoted(kid)}.",
        )

    def _unavailable(self) -> IdentityProviderUnavailable:
        return IdentityProviderUnavailable(
            f"The keys of {self._provider.issuer} cannot be fetched; retry shortly."
        )

    def _old(self, now: datetime) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE

    def _may_fetch(self, now: datetime) -> bool:
        wait = REFRESH_ON_UNKNOWN_KID if self._keys else RETRY_FIRST_FETCH
        return self._tried_at is None or not (self._tried_at <= now < self._tried_at + wait)

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            # A token without `kid` is fine when the issuer has exactly one key.
            only = list(self._keys.values())
            return only[0] if len(only) == 1 else None
        return self._keys.get(kid)

    def _fetch(self, now: datetime) -> None:
        import httpx

        self._tried_at = now
        try:
            self._keys = self._download()
            self._fetched_at = now
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("fetching the keys of %s failed: %s", self._provider.issuer, exc)
            if not self._keys:
                raise self._unavailable() from exc

    def _download(self) -> dict[str, jwt.PyJWK]:
        uri = self._provider.jwks_uri
        if uri is None:
            discovery = self._provider.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = self._get_json(discovery)
            # OpenID Connect Discovery: the document is the issuer's only if it says so.
            if document.get("issuer") != self._provider.issuer:
                raise ValueError(f"{discovery} is the document of another issuer")
            found = document.get("jwks_uri")
            if not isinstance(found, str):
                raise ValueError(f"{discovery} names no jwks_uri")
            uri = _secure_url(found)
        keys: dict[str, jwt.PyJWK] = {}
        listed = self._get_json(uri).get("keys")
        for entry in listed if isinstance(listed, list) else []:
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWTError, TypeError, ValueError):
                continue  # a key of a kind this service does not accept
            if key.algorithm_name in ALLOWED_ALGORITHMS:
                keys[key.key_id or ""] = key
        if not keys:
            raise ValueError(f"{uri} lists no RS256, ES256 or EdDSA key")
        return keys

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self._http.get(url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


class OidcVerifier:
    """Verifies bearer JWTs from the configured issuers and maps them to principals."""

    def __init__(self, providers: list[Provider], *, cache_size: int = TOKEN_CACHE_SIZE) -> None:
        self._clients = {provider.issuer: _client(provider) for provider in providers}
        self._issuers = {
            provider.issuer: (provider, IssuerKeys(provider, self._clients[provider.issuer]))
            for provider in providers
        }
        self._verified: dict[str, tuple[Principal, datetime]] = {}
        self._cache_size = cache_size

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def cached(self, token: str, *, now: datetime) -> Principal | None:
        """The principal of a token verified before and not yet expired."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        principal, until = entry
        if now < until:
            return principal
        self._verified.pop(token, None)
        return None

    def verify(self, token: str, *, now: datetime) -> Principal | None:
        """The token's principal, or None when it is not a JWT at all (so maybe an API key).
        Raises 401 for a token that does not verify, 403 when no rule gives it a role, and
        503 when its issuer's keys cannot be fetched. May fetch keys over the network."""
        cached = self.cached(token, now=now)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthorized(
                f"Tokens signed with {algorithm!r} are not accepted; the service takes"
                f" {', '.join(ALLOWED_ALGORITHMS)}."
            )
        issuer = unverified.get("iss")
        configured = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if configured is None:
            raise Unauthorized(f"The token's issuer {_quoted(issuer)} is not a configured one.")
        provider, keys = configured
        kid = header.get("kid")
        key = keys.key_for(kid if isinstance(kid, str) else None, now=now)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=provider.audience,
                issuer=provider.issuer,
                # Times are checked below against the service's clock.
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"The token does not verify: {exc}.") from exc
        until = _valid_until(claims, now=now)
        principal = _principal(provider, claims)
        self._remember(token, principal, until, now=now)
        return principal

    def _remember(
        self, token: str, principal: Principal, until: datetime, *, now: datetime
    ) -> None:
        if len(self._verified) >= self._cache_size:
            for old, (_, expires) in list(self._verified.items()):
                if expires <= now:
                    self._verified.pop(old, None)
            while len(self._verified) >= self._cache_size:
                self._verified.pop(next(iter(self._verified)), None)
        self._verified[token] = (principal, until)


def _client(provider: Provider) -> "httpx.Client":
    import httpx

    verify: ssl.SSLContext | bool = True
    if provider.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(provider.ca_file))
    return httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False, verify=verify)


def _quoted(value: Any) -> str:
    """A value from an unverified token, quoted in an answer: cut short, it cannot make the
    answer as large as the token."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "..."


def _moment(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"The token's {name} is not a number of seconds.")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise Unauthorized(f"The token's {name} is out of range.") from exc


def _valid_until(claims: Mapping[str, Any], *, now: datetime) -> datetime:
    """When the token stops being accepted (its expiry plus the leeway); 401 when that has
    passed or it is not valid yet."""
    expires = _moment(claims, "exp")
    assert expires is not None  # required above
    if expires + LEEWAY <= now:
        raise Unauthorized("The token has expired.")
    for name in ("nbf", "iat"):
        moment = _moment(claims, name)
        if moment is not None and moment - LEEWAY > now:
            raise Unauthorized(f"The token is not valid yet ({name}).")
    return expires + LEEWAY


def _principal(provider: Provider, claims: Mapping[str, Any]) -> Principal:
    rule = next((rule for rule in provider.rules if rule.matches(claims)), None)
    subject = claims["sub"]
    if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
        raise Unauthorized(f"The token's sub must be text of 1 to {MAX_SUBJECT} characters.")
    if rule is None:
        raise NoRoleForIdentity(
            f"No claim rule of issuer {provider.issuer} matches the identity {subject!r}.",
            issuer=provider.issuer,
            subject=subject,
        )
    teams: frozenset[str] | None = frozenset(rule.teams) if rule.teams is not None else None
    if rule.teams_claim is not None:
        teams = _teams_from(claims.get(rule.teams_claim))
    name = claims.get(rule.name_claim or "sub")
    return Principal(
        key_id=None,
        name=(name if isinstance(name, str) and name else subject)[:MAX_NAME],
        role=rule.role,
        kind=ActorKind.oidc,
        teams=teams,
        issuer=provider.issuer,
        subject=subject,
    )


def _teams_from(value: Any) -> frozenset[str]:
    """The teams a claim names. A rule that scopes by a claim never grants every team: a
    missing or empty claim gives no team at all, so the identity may write nothing."""
    listed = value if isinstance(value, list) else [value]
    return frozenset(item for item in listed if isinstance(item, str) and 1 <= len(item) <= 100)
