from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import UTCDateTime


class MlflowDelivery(SQLModel, table=True):
    """An MLflow webhook delivery this service has taken (app.integrations.mlflow): its id is
    the primary key, so every process and replica sees a second delivery of it as a replay."""

    __tablename__ = "mlflow_deliveries"

    # MLflow's `X-MLflow-Delivery-Id`, a UUID.
    delivery_id: str = Field(primary_key=True, max_length=100)
    # Indexed: deliveries older than any that could still pass the timestamp check are
    # deleted by age.
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)


class MlflowAlias(SQLModel, table=True):
    """The service's last decision on an MLflow alias mapped to a stage: which version it
    gated for it and whether that version may keep it. Reconciliation
    (app.integrations.mlflow.reconcile) compares MLflow's aliases with these rows to find the
    ones set while the service did not hear of them."""

    __tablename__ = "mlflow_aliases"

    # The registered model's name, as in the linked system's `mlflow:models/<name>`.
    model: str = Field(primary_key=True, max_length=500)
    alias: str = Field(primary_key=True, max_length=255)
    version: str = Field(max_length=200)
    allowed: bool
    gate_check_id: int | None = Field(default=None)
    decided_at: datetime = Field(sa_type=UTCDateTime)
