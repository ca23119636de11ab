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
