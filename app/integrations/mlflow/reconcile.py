"""Aliases set while the service heard nothing of them (it was down, MLflow gave up on a
delivery, the webhook was not registered yet) are found and gated here: at start-up and then
every READINESS_MLFLOW_RECONCILE_SECONDS, with a tracking server set, each worker reads the
aliases of every linked model from MLflow's REST API and compares the ones mapped to a stage
with the last decision recorded on each (`mlflow_aliases`, written with every decision).

An alias is gated, exactly as a delivery of its creation would be (`service.receive`, then
MLflow told after the commit), when

- no decision on it is recorded, or the recorded one is about another version: it was set,
  or moved, unseen;
- the recorded decision denied this very version: the alias is back (set again after the
  denial), or its removal failed. Unless that denial is less than `IN_FLIGHT` old, or newer
  than this round's read of MLflow: its removal may still be on its way, and what was read
  may be older than the decision.

An allowed version keeping its alias is what was decided: left alone. The look at the record
and the gating are one transaction that has locked the linked system first, as a delivery
does, so of two workers (or a worker and a delivery) on the same alias the second sees the
first's decision and does nothing.
"""

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from app.background import BackgroundThread
from app.config import Settings
from app.db import Database, read_transaction, write_transaction
from app.integrations.mlflow import client, service
from app.integrations.mlflow.schemas import AliasCreated, MlflowActions
from app.lifecycle.stages import GateStage
from app.models import MlflowAlias, System
from app.outage import reason

logger = logging.getLogger("app.integrations.mlflow")

# How long a denial's calls to MLflow may still be under way after its commit: five calls of
# `client.TIMEOUT` each at most, and some room.
IN_FLIGHT = timedelta(seconds=60)
ENTITY, ACTION = service.ALIAS_CREATED


@dataclass(frozen=True)
class Gated:
    """One alias gated by a round, and what MLflow was told."""

    alias: AliasCreated
    received: service.Received
    mlflow: MlflowActions | None


def linked_models(session: Session) -> list[str]:
    """The registered models some system is linked to, by name."""
    prefix = service.EXTERNAL_REF_PREFIX
    refs = session.exec(
        select(System.external_ref)
        .where(col(System.external_ref).startswith(prefix, autoescape=True))
        .order_by(col(System.external_ref))
    )
    return [ref[len(prefix) :] for ref in refs if ref]


def decided(record: MlflowAlias | None, version: str, *, read_at: datetime) -> bool:
    """Whether the recorded decision already answers the alias naming `version` (see the
    module's docstring)."""
    if record is None or record.version != version:
        return False
    return record.allowed or record.decided_at >= read_at - IN_FLIGHT


def delivery_id(alias: AliasCreated, record: MlflowAlias | None) -> str:
    """The synthetic delivery id a gating takes (`mlflow_deliveries`): one per alias, version
    and decision it supersedes, so a gating runs once, and an alias set again after a denial
    is gated again. A digest, as delivery ids are 100 characters at most."""
    before = f"{record.gate_check_id}@{record.decided_at.isoformat()}" if record else "none"
    digest = hashlib.sha256(
        "\n".join((alias.name, alias.alias, alias.version, before)).encode()
    ).hexdigest()
    return f"reconcile:{digest[:64]}"


def gate(
    database: Database,
    alias: AliasCreated,
    *,
    stages: Mapping[str, GateStage],
    read_at: datetime,
    now: datetime,
) -> service.Received | None:
    """Gate one alias MLflow has, unless the recorded decision answers it already; None when
    it does (or no system is linked to the model any more)."""
    with write_transaction(database) as session:
        # Locked before the record is read: a delivery or another worker deciding on this
        # alias holds these rows until its decision is committed.
        if not service.linked_systems(session, alias.name, now=now):
            return None
        record = session.get(MlflowAlias, (alias.name, alias.alias))
        if decided(record, alias.version, read_at=read_at):
            return None
        received = service.receive(
            session,
            delivery_id=delivery_id(alias, record),
            entity=ENTITY,
            action=ACTION,
            alias=alias,
            stages=stages,
            now=now,
        )
        service.remember(session, alias, received, now=now)
        return received


async def reconcile_once(
    database: Database,
    *,
    settings: Settings,
    clock: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> list[Gated]:
    """One round over every linked model; what it gated. MLflow that cannot be asked about a
    model is logged, and that model waits for the next round."""
    tracking_uri = settings.readiness_mlflow_tracking_uri
    stages = settings.mlflow_alias_stages()
    if tracking_uri is None or not stages:
        return []
    secret = settings.readiness_mlflow_tracking_token
    token = secret.get_secret_value() if secret is not None else None
    with read_transaction(database) as session:
        models = linked_models(session)
    gated: list[Gated] = []
    for model in models:
        if stop is not None and stop.is_set():
            break
        read_at = clock()
        found = await client.aliases(tracking_uri=tracking_uri, token=token, model=model)
        for name, version in sorted((found or {}).items()):
            if name not in stages or (stop is not None and stop.is_set()):
                continue
            alias = AliasCreated(name=model, alias=name, version=version)
            # In place: the loop is the round's own (the thread's, or a test's), nothing else
            # waits on it.
            received = gate(database, alias, stages=stages, read_at=read_at, now=clock())
            if received is None:
                continue
            logger.info(
                "MLflow alias %s of %s on version %s, set unseen: %s",
                name,
                model,
                version,
                received.outcome.value,
            )
            actions = None
            if received.verdict is not None:
                # Committed: only now is MLflow told, as after a delivery.
                actions = await client.report(
                    tracking_uri=tracking_uri,
                    token=token,
                    model=model,
                    alias=name,
                    version=version,
                    verdict=received.verdict,
                    gate_check_id=service.gate_check_ids(received),
                    blocking=service.blocking_codes(received),
                )
            gated.append(Gated(alias, received, actions))
    return gated


class MlflowReconciler(BackgroundThread):
    """Runs `reconcile_once` at start-up and every READINESS_MLFLOW_RECONCILE_SECONDS, in
    every worker; only with a tracking server to read the aliases from."""

    def __init__(
        self, database: Database, *, settings: Settings, clock: Callable[[], datetime]
    ) -> None:
        # A round stops before the next model or alias once asked to. Shutdown waits for the
        # call to MLflow under way, not for all of an alias's (30 s at most): the platform's
        # grace period is shorter than that and the requests' drain together.
        super().__init__("mlflow-reconcile", stop_timeout=client.TIMEOUT + 5)
        self._database = database
        self._settings = settings
        self._clock = clock

    def needed(self) -> bool:
        return (
            self._settings.readiness_mlflow_tracking_uri is not None
            and self._settings.readiness_mlflow_reconcile_seconds > 0
        )

    def run(self, stop: threading.Event) -> None:
        failing = False
        loop = asyncio.new_event_loop()
        try:
            while not stop.is_set():
                try:
                    loop.run_until_complete(
                        reconcile_once(
                            self._database, settings=self._settings, clock=self._clock, stop=stop
                        )
                    )
                except Exception as exc:
                    if not failing:  # once, not every round while the database is away
                        logger.warning(
                            "MLflow aliases not reconciled (%s): trying again", reason(exc)
                        )
                    failing = True
                else:
                    failing = False
                stop.wait(self._settings.readiness_mlflow_reconcile_seconds)
        finally:
            loop.close()
