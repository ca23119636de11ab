"""Migrations upgrade an empty database to head and back, on the suite's back-end, and
describe exactly the models (autogenerate finds nothing to add)."""

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from tests.conftest import alembic_config, project_path


@pytest.fixture
def empty_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"{url.database}_migrations"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, "head")
        tables = set(inspect(engine).get_table_names())
        assert set(SQLModel.metadata.tables) <= tables
        with engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version FROM policies WHERE is_active")).scalar()
                == 1
            )

        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        command.upgrade(config, "head")
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}),
                SQLModel.metadata,
            )
        assert differences == []
    finally:
        engine.dispose()


def test_revisions_import_nothing_from_the_app() -> None:
    """Each revision is frozen: it carries its tables and data as literals, so history replays
    the same whatever the application's code becomes."""
    versions = project_path("migrations", "versions")
    revisions = sorted(versions.glob("*.py"))
    assert revisions
    for revision in revisions:
        tree = ast.parse(revision.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {name for name in imported if name == "app" or name.startswith("app.")}, (
            revision.name
        )


def test_a_fresh_database_gets_policy_version_one_as_the_default_policy_file_says(
    empty_database_url: str,
) -> None:
    from app.policies.document import PolicyRules
    from app.policies.service import default_policy_document

    engine = create_engine(empty_database_url)
    try:
        command.upgrade(alembic_config(empty_database_url), "head")
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT document FROM policies WHERE version = 1")
            ).scalar_one()
        document = json.loads(stored) if isinstance(stored, str) else stored
        # The seed predates attested_by and independent_approval; their defaults fill it in.
        # (A new shipped default would come as a new version, by a revision of its own.)
        assert PolicyRules.model_validate(document) == PolicyRules.model_validate(
            default_policy_document()
        )
    finally:
        engine.dispose()


def test_the_chain_is_filled_for_events_logged_before_it(empty_database_url: str) -> None:
    """Events logged before the hash chain get theirs on upgrade, by the rule the app keeps
    (app.audit.chain): GET /v1/audit/verify holds over old and new events alike."""
    from sqlmodel import Session

    from app.audit import service as audit_service
    from app.audit.chain import GENESIS

    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, "303e06edce21")
        old_events = [
            ("api_key.created", None, "api_key", 1, "admin", None, None, "2026-01-15 09:00:00", {}),
            (
                "system.created",
                "claims-ä",
                "oidc",
                None,
                "ci",
                "https://issuer.example",
                "repo:acme/x",
                "2026-01-15 09:00:00.123456",
                {"name": "Åsa ✓", "score": 0.5, "labels": {"b": 1, "a": [True, None]}},
            ),
            (
                "evidence.recorded",
                "claims-ä",
                None,
                2,
                "pipe",
                None,
                None,
                "2026-01-16 10:30:00.5",
                {},
            ),
        ]
        with engine.begin() as connection:
            for type_, key, kind, actor_id, name, issuer, subject, at, data in old_events:
                connection.execute(
                    text(
                        "INSERT INTO events (type, system_key, actor_kind, actor_id, actor_name,"
                        " actor_issuer, actor_subject, occurred_at, data) VALUES (:type, :key,"
                        " :kind, :actor_id, :name, :issuer, :subject, :at, :data)"
                    ),
                    {
                        "type": type_,
                        "key": key,
                        "kind": kind or "api_key",
                        "actor_id": actor_id,
                        "name": name,
                        "issuer": issuer,
                        "subject": subject,
                        "at": at if engine.dialect.name == "sqlite" else f"{at}+00",
                        "data": json.dumps(data),
                    },
                )
        command.upgrade(config, "head")
        with Session(engine) as session:
            assert audit_service.verify(session) == audit_service.Verification(True, 3)
        with engine.connect() as connection:
            links = connection.execute(text("SELECT prev_hash, hash FROM events ORDER BY id")).all()
        assert links[0][0] == GENESIS
        assert [prev for prev, _ in links[1:]] == [hash for _, hash in links[:-1]]
        command.downgrade(config, "303e06edce21")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM events")).scalar() == 3
    finally:
        engine.dispose()


def test_each_system_gets_the_release_its_last_transition_named(empty_database_url: str) -> None:
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, "5c0a1f7e2b93")
        with engine.begin() as connection:
            for system_id, key in ((1, "named"), (2, "unnamed"), (3, "unmoved")):
                connection.execute(
                    text(
                        "INSERT INTO systems (id, key, name, impact_areas, oversight, risk_tier,"
                        " risk_tier_rule, labels, stage, version, created_at, updated_at,"
                        " score, level, pilot_ready, production_ready, readiness_document,"
                        " readiness_policy_version, readiness_rules_version, readiness_seq)"
                        " VALUES (:id, :key, :key, '[]', 'none', 'minimal', '{}', '{}',"
                        " 'production', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', 0,"
                        " 'not_ready', false, false, '{}', 1, 1, 0)"
                    ),
                    {"id": system_id, "key": key},
                )
            moves = [
                (1, "pilot", "0.9", "models:/m/9"),
                (1, "production", "1.0", "models:/m/10"),
                (2, "pilot", "0.9", None),
                (2, "production", None, None),
            ]
            for system_id, stage, version, uri in moves:
                connection.execute(
                    text(
                        "INSERT INTO transitions (system_id, from_stage, to_stage, reason,"
                        " release_version, release_uri, score, policy_version, blocking,"
                        " actor_name, actor_kind, occurred_at) VALUES (:system_id, 'proposed',"
                        " :stage, 'r', :version, :uri, 0, 1, '[]', 'a', 'api_key',"
                        " '2026-01-02 00:00:00')"
                    ),
                    {"system_id": system_id, "stage": stage, "version": version, "uri": uri},
                )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT key, release_version, release_uri FROM systems ORDER BY id")
            ).all()
        assert [tuple(row) for row in rows] == [
            ("named", "1.0", "models:/m/10"),
            ("unnamed", None, None),
            ("unmoved", None, None),
        ]
    finally:
        engine.dispose()


def test_keys_of_before_people_keep_working_and_lose_only_their_person_on_downgrade(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, "e7a1c3d5f902")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, role, key_hash, key_prefix, created_at)"
                    " VALUES (7, 'risk-office', 'approver', :hash, 'rdy_abcd',"
                    " '2026-01-01 00:00:00')"
                ),
                {"hash": "a" * 64},
            )
        command.upgrade(config, "4f6a8c2e1b37")
        with engine.begin() as connection:
            assert connection.execute(text("SELECT person FROM api_keys")).all() == [(None,)]
            connection.execute(text("UPDATE api_keys SET person = 'ann@example.com'"))
        indexes = {index["name"] for index in inspect(engine).get_indexes("approvals")}
        assert "ix_approvals_approver_id" in indexes
        command.downgrade(config, "e7a1c3d5f902")
        columns = {column["name"] for column in inspect(engine).get_columns("api_keys")}
        assert "person" not in columns
        with engine.connect() as connection:
            assert connection.execute(text("SELECT id, name FROM api_keys")).all() == [
                (7, "risk-office")
            ]
        indexes = {index["name"] for index in inspect(engine).get_indexes("approvals")}
        assert "ix_approvals_approver_id" not in indexes
    finally:
        engine.dispose()


UNIQUE_EXTERNAL_REF = "fe9d6334faa0"
BEFORE_UNIQUE_EXTERNAL_REF = f"{UNIQUE_EXTERNAL_REF}-1"


def _insert_system(connection: Any, key: str, external_ref: str | None) -> None:
    connection.execute(
        text(
            "INSERT INTO systems (key, name, impact_areas, oversight, risk_tier, risk_tier_rule,"
            " labels, stage, version, created_at, updated_at, score, level, pilot_ready,"
            " production_ready, readiness_document, readiness_policy_version, external_ref)"
            " VALUES (:key, :key, '[]', 'human_reviews_all', 'minimal', '{}', '{}', 'proposed',"
            " 1, :at, :at, 0, 'not_ready', false, false, '{}', 1, :ref)"
        ),
        {"key": key, "at": "2026-12-01 09:00:00+00", "ref": external_ref},
    )


def test_systems_sharing_an_external_ref_stop_the_upgrade_until_one_keeps_it(
    empty_database_url: str,
) -> None:
    """From fe9d6334faa0 one system per external_ref: an upgrade over systems that share one
    refuses and names them; once they no longer do, it goes through."""
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, BEFORE_UNIQUE_EXTERNAL_REF)
        with engine.begin() as connection:
            _insert_system(connection, "claims-a", "mlflow:models/claims")
            _insert_system(connection, "claims-b", "mlflow:models/claims")
            _insert_system(connection, "drafter", "mlflow:models/drafter")
            _insert_system(connection, "unlinked-a", None)
            _insert_system(connection, "unlinked-b", None)
        with pytest.raises(RuntimeError, match=r"'mlflow:models/claims': claims-a, claims-b\."):
            command.upgrade(config, "head")
        with engine.connect() as connection:
            at = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert (
            at
            == ScriptDirectory.from_config(config).get_revision(UNIQUE_EXTERNAL_REF).down_revision
        )

        with engine.begin() as connection:
            connection.execute(
                text("UPDATE systems SET external_ref = NULL WHERE key = 'claims-b'")
            )
        command.upgrade(config, "head")
        with engine.begin() as connection, pytest.raises(IntegrityError):
            connection.execute(
                text(
                    "UPDATE systems SET external_ref = 'mlflow:models/claims' WHERE key = 'drafter'"
                )
            )
        command.downgrade(config, BEFORE_UNIQUE_EXTERNAL_REF)
    finally:
        engine.dispose()


def test_a_stored_seed_is_dropped_and_its_public_key_kept(empty_database_url: str) -> None:
    """The key a process of the release before generated into the database: after the
    upgrade no seed is left anywhere in it, and the checkpoints it signed still verify by
    their key_id."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from fastapi.testclient import TestClient

    from app.config import Settings
    from app.main import create_app
    from tests.conftest import ADMIN_SECRET, auth

    seed = bytes(range(200, 232))
    public = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    key_id = hashlib.sha256(public).hexdigest()[:16]
    config = alembic_config(empty_database_url)
    engine = create_engine(empty_database_url)
    try:
        command.upgrade(config, "e7a1c3d5f902")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_signing_keys (id, seed, created_at)"
                    " VALUES (1, :seed, '2026-12-07 02:00:00')"
                ),
                {"seed": base64.b64encode(seed).decode()},
            )
        command.upgrade(config, "head")
        assert "audit_signing_keys" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            kept = connection.execute(
                text("SELECT key_id, algorithm, public_key FROM audit_public_keys")
            ).all()
        assert [tuple(row) for row in kept] == [
            (key_id, "Ed25519", base64.b64encode(public).decode())
        ]

        # A checkpoint that key signed before the upgrade, verified by a service that now
        # signs with another key.
        signed_at = "2026-12-07T03:00:00Z"
        message = f"0:{'0' * 64}:{signed_at}"
        checkpoint = {
            "event_id": 0,
            "hash": "0" * 64,
            "signed_at": signed_at,
            "signature": base64.b64encode(
                Ed25519PrivateKey.from_private_bytes(seed).sign(message.encode())
            ).decode(),
            "key_id": key_id,
        }
        settings = Settings(
            database_url=empty_database_url,
            readiness_bootstrap_admin_key=ADMIN_SECRET,  # type: ignore[arg-type]
            readiness_audit_signing_key=base64.b64encode(bytes(32)).decode(),  # type: ignore[arg-type]
            readiness_mirror_warmup=False,
            readiness_reevaluate_on_start=False,
            readiness_expiry_events=False,
            readiness_webhook_dispatch=False,
        )
        app = create_app(settings)
        with TestClient(app) as client:
            response = client.post("/v1/audit/verify", json=checkpoint, headers=auth(ADMIN_SECRET))
        app.state.database.dispose()
        assert response.status_code == 200, response.text
        assert response.json()["ok"] is True

        command.downgrade(config, "e7a1c3d5f902")
        tables = set(inspect(engine).get_table_names())
        assert "audit_signing_keys" in tables
        assert "audit_public_keys" not in tables
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_signing_keys")).scalar() == 0
        command.upgrade(config, "head")
    finally:
        engine.dispose()
