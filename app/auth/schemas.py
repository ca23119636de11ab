from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.auth.roles import Role
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


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
