from datetime import datetime

from pydantic import ConfigDict, Field, StrictBool

from app.policies.document import PolicyRules


class PolicyCreate(PolicyRules):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "activate": True,
                    "description": "Stricter evidence freshness for limited tier",
                    "tiers": {
                        tier: {
                            "pilot": {"min_score": 0, "required": ["purpose"]},
                            "production": {"min_score": 50, "required": ["purpose", "owner"]},
                        }
                        for tier in ("minimal", "limited", "high", "critical")
                    },
                }
            ]
        },
    )

    activate: StrictBool = Field(default=False, description="Make this version the active one.")


class PolicyRead(PolicyRules):
    version: int
    active: bool
    created_at: datetime
