from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.readiness.scoring import EvidenceStatus
from app.schemas import ReleaseVersion, RequestModel, UtcDateTime


class EvidenceWrite(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "met",
                    "summary": "Offline evaluation on 2,000 labelled claims: 94% agreement.",
                    "uri": "https://mlflow.example.com/runs/81f3",
                    "expires_at": "2027-06-30T00:00:00Z",
                    "release": "2.4.1",
                }
            ]
        },
    )

    status: EvidenceStatus
    summary: str | None = Field(default=None, max_length=5000)
    uri: str | None = Field(
        default=None,
        max_length=2000,
        # http(s) only: clients render it as a link, where `javascript:` or `data:` would run
        # or show content of the sender's choosing, and `file:` point into the reader's disk.
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$",
        description="Where the evidence can be read: an `http` or `https` URL.",
    )
    expires_at: UtcDateTime | None = Field(
        default=None, description="After this moment the evidence is stale."
    )
    release: ReleaseVersion | None = Field(
        default=None,
        description="The release (model version) this evidence is about. For the policy's"
        " `release_bound` controls it counts only when that release is judged; without it,"
        " for every release.",
    )

    @model_validator(mode="after")
    def _not_applicable_says_why(self) -> Self:
        if self.status is EvidenceStatus.not_applicable and not (
            self.summary and self.summary.strip()
        ):
            raise ValueError("not_applicable needs a summary saying why")
        return self


class EvidenceRead(BaseModel):
    system_key: str
    control: str
    version: int = Field(description="1 for the first evidence of this control, then +1.")
    status: EvidenceStatus
    summary: str | None
    uri: str | None
    expires_at: datetime | None
    recorded_at: datetime
    recorded_by: int | None = Field(description="Id of the API key that recorded it.")
    source: str = Field(description="`api`, or the pilot whose conclusion recorded it.")
    release: str | None = Field(
        default=None, description="The release it is about; null: every release."
    )
    current: bool
    stale: bool = Field(description="Stale now: past expires_at or older than the policy allows.")
