"""The MLflow settings as the process reads them: a value that is not valid stops it at start,
saying why, never echoing a URL that might carry credentials."""

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.vocabulary import GateStage


def test_the_defaults_map_champion_and_challenger() -> None:
    settings = Settings()
    assert settings.mlflow_alias_stages() == {
        "champion": GateStage.production,
        "challenger": GateStage.pilot,
    }
    assert settings.readiness_mlflow_webhook_secret is None
    assert settings.readiness_mlflow_tracking_uri is None


def test_the_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READINESS_MLFLOW_ALIAS_STAGES", " live = production , canary=pilot ")
    monkeypatch.setenv("READINESS_MLFLOW_TRACKING_URI", "https://mlflow.example.com/base/")
    monkeypatch.setenv("READINESS_MLFLOW_WEBHOOK_SECRET", "s3cret")
    settings = Settings()
    assert settings.mlflow_alias_stages() == {
        "live": GateStage.production,
        "canary": GateStage.pilot,
    }
    assert settings.readiness_mlflow_tracking_uri == "https://mlflow.example.com/base"
    secret = settings.readiness_mlflow_webhook_secret
    assert secret is not None
    assert secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_no_alias_at_all_maps_nothing() -> None:
    assert Settings(readiness_mlflow_alias_stages="").mlflow_alias_stages() == {}


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("champion", "alias=stage"),
        ("champion=retired", "pilot or production"),
        ("champion=production,champion=pilot", "mapped twice"),
        ("champ ion=production", "alias=stage"),
        ("=production", "alias=stage"),
    ],
)
def test_alias_stages_that_are_not_valid_are_refused(value: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(readiness_mlflow_alias_stages=value)


@pytest.mark.parametrize(
    "uri", ["mlflow.example.com", "ftp://mlflow.example.com", "https://user:pw@mlflow.example.com"]
)
def test_a_tracking_uri_must_be_http_without_credentials(uri: str) -> None:
    with pytest.raises(ValidationError, match="http:// or https://") as refused:
        Settings(readiness_mlflow_tracking_uri=uri)
    assert "pw@" not in str(refused.value)


def test_reconciliation_runs_every_five_minutes_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().readiness_mlflow_reconcile_seconds == 300
    monkeypatch.setenv("READINESS_MLFLOW_RECONCILE_SECONDS", "0")
    assert Settings().readiness_mlflow_reconcile_seconds == 0


@pytest.mark.parametrize("seconds", [-1, 86_401])
def test_a_reconcile_interval_out_of_range_is_refused(seconds: int) -> None:
    with pytest.raises(ValidationError, match="readiness_mlflow_reconcile_seconds"):
        Settings(readiness_mlflow_reconcile_seconds=seconds)
