"""Building blocks shared by every request model, and the one `Actor` responses name."""

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)
from pydantic.config import JsonDict

from app.auth.roles import ActorKind

# Deeper than any request body nests (a policy's tiers.high.production.required is 4).
MAX_BODY_DEPTH = 16


# Unicode's bidirectional embeddings, overrides (U+202A..U+202E) and isolates (U+2066..U+2069):
# in a name, summary or justification they make text display in another order than it is
# stored, so a reviewer reads something else than what was recorded ("Trojan Source").
BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_UNSAFE_TEXT = re.compile(f"[\x00{BIDI_CONTROLS}]")


def _where(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "the body"


def _plain_data(value: Any) -> None:
    # A loop, not recursion, and a depth bound: a body nested about as deep as the JSON
    # parser allows (a few KB of brackets) overflowed the stack here, and in an enum
    # field's error message (repr of the value), answering 500 instead of 422.
    # Every string is checked, keys too: a map's keys (a pilot's metrics) are shown as well.
    pending: list[tuple[Any, int, tuple[str | int, ...]]] = [(value, 0, ())]
    while pending:
        item, depth, path = pending.pop()
        if isinstance(item, str):
            unsafe = _UNSAFE_TEXT.search(item)
            if unsafe is not None:
                if unsafe.group() == "\x00":
                    raise ValueError(f"text may not contain NUL characters (at {_where(path)})")
                raise ValueError(
                    "text may not contain Unicode bidirectional controls (U+202A..U+202E,"
                    f" U+2066..U+2069) (at {_where(path)})"
                )
        elif isinstance(item, dict):
            if depth == MAX_BODY_DEPTH:
                raise ValueError(f"the body nests deeper than {MAX_BODY_DEPTH} levels")
            for key, child in item.items():
                pending.append((key, depth + 1, path))
                pending.append((child, depth + 1, (*path, str(key))))
        elif isinstance(item, list):
            if depth == MAX_BODY_DEPTH:
                raise ValueError(f"the body nests deeper than {MAX_BODY_DEPTH} levels")
            pending.extend((child, depth + 1, (*path, index)) for index, child in enumerate(item))


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, and so is text a database cannot store or
    that displays in another order than it is stored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        # PostgreSQL refuses NUL in text; refusing it here keeps both back-ends alike. Bidi
        # controls are refused in every string of every body at once, rather than field by
        # field, so a free-text field added later is covered too.
        # Runs before any field is validated, so the depth bound protects them all.
        _plain_data(data)
        return data


# An owner team, as systems name it (`owner.team`), and as keys and identities are scoped: a
# slug, so two spellings of one team (case, spaces, look-alike letters) cannot scope apart.
# Names stored before this rule are kept as they are; only new ones must match.
TEAM_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
TeamName = Annotated[
    str,
    # The lengths repeat what the pattern says, so the document states the bound plainly.
    StringConstraints(min_length=1, max_length=63, pattern=TEAM_NAME_PATTERN),
    Field(
        description="A team: lower-case letters, digits, `.`, `_` and `-`, at most 63"
        " characters, starting with a letter or digit.",
        examples=["claims-platform"],
    ),
]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError("the moment is outside the supported range once in UTC") from exc


UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


# Text a request names in its path or query: no NUL, which PostgreSQL cannot compare with (it
# refused such a lookup as unstorable while SQLite answered 404), refused alike everywhere.
NO_NUL = r"^[^\x00]*$"


def _whole_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema means one: 3 or 3.0, never "3" or true. In an optional field put
# the bounds inside, before WholeNumber (`Annotated[int, Strict(), Field(ge=1), WholeNumber]
# | None`): outside, pydantic writes them into the document as `ge`/`le`, not as JSON Schema.
WholeNumber = BeforeValidator(_whole_number)
JsonInt = Annotated[int, Strict(), WholeNumber]


def _keys_by_pattern(schema: JsonDict) -> None:
    # pydantic renders a map with constrained keys as `patternProperties`, which leaves every
    # other key open to any value. State what the model enforces: every key matches the
    # pattern (`propertyNames`) and every value the value schema (`additionalProperties`).
    patterns = schema.pop("patternProperties", None)
    if not isinstance(patterns, dict) or len(patterns) != 1:
        return
    ((pattern, values),) = patterns.items()
    names = schema.get("propertyNames")
    schema["propertyNames"] = {**(names if isinstance(names, dict) else {}), "pattern": pattern}
    schema["additionalProperties"] = values


# For `Annotated[dict[PatternConstrainedStr, V], KeysByPattern]`.
KeysByPattern = Field(json_schema_extra=_keys_by_pattern)


ReleaseVersion = Annotated[
    str, Field(min_length=1, max_length=200, description="A release (model version).")
]


class Release(BaseModel):
    """A release of a system: the model version a transition or gate check names."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=200, description="The model release.")
    uri: str | None = Field(default=None, max_length=2000)


class Actor(BaseModel):
    """Who did something: one model for every response, so the document has one `Actor`."""

    kind: ActorKind = Field(
        description="`api_key`, `oidc` (a verified token of a configured issuer), or"
        " `service` (the service itself)."
    )
    id: int | None = Field(description="The API key's id; null for other kinds.")
    name: str
    issuer: str | None = Field(default=None, description="OIDC: the token's issuer (`iss`).")
    subject: str | None = Field(default=None, description="OIDC: the token's subject (`sub`).")

    @classmethod
    def recorded(cls, row: object, prefix: str = "actor") -> "Actor":
        """The actor a record stores in its `<prefix>_id`, `_name`, `_kind`, `_issuer` and
        `_subject` columns (app.auth.roles.Principal.columns writes them)."""
        return cls(
            kind=getattr(row, f"{prefix}_kind") or ActorKind.api_key,
            id=getattr(row, f"{prefix}_id"),
            name=getattr(row, f"{prefix}_name"),
            issuer=getattr(row, f"{prefix}_issuer"),
            subject=getattr(row, f"{prefix}_subject"),
        )
