from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from app.auth.roles import Role
from app.auth.service import SHOWN_PREFIX_MAX
from app.schemas import RequestModel, TeamName

MAX_TEAMS = 50
Teams = Annotated[
    list[TeamName],
    Field(
        min_length=1,
        max_length=MAX_TEAMS,
        json_schema_extra={"uniqueItems": True},
        description=(
            "The owner teams the key acts for: it writes only to their systems. Absent or"
            " null: every team (platform-wide). Admin keys cannot be scoped."
        ),
    ),
]


MAX_PERSON = 200
Person = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PERSON,
        description=(
            "The person who holds the key, such as an e-mail address. Approvals are counted"
            " by person, compared case-insensitively: two keys of one person count as one"
            " approver. Absent or null: the key counts as a person of its own."
        ),
        examples=["ann@example.com"],
    ),
]


class ApiKeyCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "training-pipeline", "role": "pipeline", "teams": ["claims-platform"]},
                {"name": "ann-laptop", "role": "approver", "person": "ann@example.com"},
            ],
            # The document states what `_scope` refuses, so a client or a generated test
            # never takes a scoped admin key for valid: with role admin, teams is absent or
            # null. (JSON Schema's if/then, which OpenAPI 3.1 has; the service still checks.)
            "if": {"properties": {"role": {"const": Role.admin.value}}, "required": ["role"]},
            "then": {"properties": {"teams": {"type": "null"}}},
        },
    )

    name: str = Field(min_length=1, max_length=100, description="Who or what uses the key.")
    role: Role
    teams: Teams | None = None
    person: Person | None = None

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.teams is None:
            return self
        if len(set(self.teams)) != len(self.teams):
            raise ValueError("teams lists a team twice")
        if self.role == Role.admin:
            raise ValueError("admin keys act for every team and cannot be scoped")
        return self


class ApiKeyRead(BaseModel):
    id: int
    name: str
    role: Role
    key_prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    teams: list[str] | None = Field(
        description="The owner teams the key acts for; null: every team (platform-wide)."
    )
    person: str | None = Field(
        default=None,
        description="The person who holds the key; null: the key counts as a person of its own.",
    )

    @field_validator("key_prefix")
    @classmethod
    def _shown(cls, value: str) -> str:
        # Keys stored before prefixes were shortened kept up to 10 characters.
        return value[:SHOWN_PREFIX_MAX]


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
