from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.auth.roles import Role
from app.auth.service import SHOWN_PREFIX_MAX
from app.schemas import RequestModel


class ApiKeyCreate(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "training-pipeline", "role": "pipeline"}]},
    )

    name: str = Field(min_length=1, max_length=100, description="Who or what uses the key.")
    role: Role


class ApiKeyRead(BaseModel):
    id: int
    name: str
    role: Role
    key_prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @field_validator("key_prefix")
    @classmethod
    def _shown(cls, value: str) -> str:
        # Keys stored before prefixes were shortened kept up to 10 characters.
        return value[:SHOWN_PREFIX_MAX]


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
