"""Which key signs checkpoints: the configured seed, or one generated into a key file readable
by its owner only, never into the database; and every key that has signed stays verifiable
by its key_id after a rotation."""

import base64
import hashlib
import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, inspect, text

from app.audit.keyfile import KeyFileError
from app.config import Settings
from app.main import PROJECT_ROOT, create_app
from tests.conftest import ADMIN_SECRET, AUDIT_SEED, auth
from tests.serving import free_port, make_run_command, make_run_server


def raw_public(seed: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(seed: bytes) -> str:
    return hashlib.sha256(raw_public(seed)).hexdigest()[:16]


def public_key(client: TestClient, viewer: dict[str, str]) -> dict[str, Any]:
    response = client.get("/v1/audit/public-key", headers=viewer)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def seed_in(key_file: Path) -> bytes:
    return base64.b64decode(key_file.read_text().strip())


def other_app(app: FastAPI, **settings: Any) -> FastAPI:
    """Another process of the service on the same database, with these settings changed."""
    changed = Settings(**{**app.state.settings.model_dump(), **settings})
    return create_app(changed, clock=app.state.clock)


def test_the_configured_seed_signs(client: TestClient, viewer: dict[str, str]) -> None:
    raw = raw_public(AUDIT_SEED)
    assert public_key(client, viewer) == {
        "key_id": key_id(AUDIT_SEED),
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw).decode(),
    }
    checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
    Ed25519PrivateKey.from_private_bytes(AUDIT_SEED).public_key().verify(
        base64.b64decode(checkpoint["signature"]),
        f"{checkpoint['event_id']}:{checkpoint['hash']}:{checkpoint['signed_at']}".encode(),
    )


class TestWithoutAConfiguredKey:
    @pytest.fixture
    def key_file(self, tmp_path: Path) -> Path:
        return tmp_path / "keys" / "audit.key"

    @pytest.fixture
    def app_settings(self, key_file: Path) -> dict[str, Any]:
        key_file.parent.mkdir()
        return {
            "readiness_audit_signing_key": None,
            "readiness_audit_signing_key_file": str(key_file),
        }

    def test_a_key_file_readable_by_its_owner_only_is_made_and_used_after_a_restart(
        self, app: FastAPI, client: TestClient, viewer: dict[str, str], key_file: Path
    ) -> None:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        seed = seed_in(key_file)
        first = public_key(client, viewer)
        assert first["key_id"] == key_id(seed) != key_id(AUDIT_SEED)
        assert os.listdir(key_file.parent) == [key_file.name]  # no temporary file left
        # The service restarted, with the same file.
        restarted = other_app(app)
        with TestClient(restarted) as restarted_client:
            assert public_key(restarted_client, viewer) == first
            checkpoint = restarted_client.get("/v1/audit/checkpoint", headers=viewer).json()
        restarted.state.database.dispose()
        assert checkpoint["key_id"] == first["key_id"]
        assert seed_in(key_file) == seed

    def test_nothing_secret_is_in_the_database(
        self, client: TestClient, engine: Engine, viewer: dict[str, str], key_file: Path
    ) -> None:
        assert client.get("/v1/audit/checkpoint", headers=viewer).status_code == 200
        seed = seed_in(key_file)
        spellings = [
            base64.b64encode(seed).decode(),
            base64.urlsafe_b64encode(seed).decode().rstrip("="),
            seed.hex(),
        ]
        stored = []
        with engine.connect() as connection:
            for table in inspect(engine).get_table_names():
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    stored.extend(str(value) for value in row)
                    stored.extend(value.hex() for value in row if isinstance(value, bytes))
        everything = "\n".join(stored)
        assert base64.b64encode(raw_public(seed)).decode() in everything  # the public key is
        for spelling in spellings:
            assert spelling not in everything
            assert spelling.upper() not in everything

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
    def test_a_key_file_others_may_read_is_refused(
        self, app: FastAPI, key_file: Path, mode: int
    ) -> None:
        key_file.write_text(base64.b64encode(bytes(range(1, 33))).decode() + "\n")
        key_file.chmod(mode)
        refused = pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600")
        with refused, TestClient(app):
            pass

    @pytest.mark.parametrize(
        "content", [b"", b"not base64!\n", base64.b64encode(bytes(31)) + b"\n", b"\xff\xfe"]
    )
    def test_a_key_file_without_a_key_is_refused(
        self, app: FastAPI, key_file: Path, content: bytes
    ) -> None:
        key_file.write_bytes(content)
        key_file.chmod(0o600)
        with pytest.raises(KeyFileError, match="holds no key"), TestClient(app):
            pass
        assert key_file.read_bytes() == content  # left as it was, for its owner to restore

    def test_a_directory_where_no_file_can_be_made_is_refused(
        self, app: FastAPI, key_file: Path
    ) -> None:
        key_file.parent.chmod(0o500)
        try:
            if os.access(key_file.parent, os.W_OK):
                pytest.skip("running as a user who may write anywhere")
            refused = pytest.raises(
                KeyFileError, match=r"cannot be made.*READINESS_AUDIT_SIGNING_KEY"
            )
            with refused, TestClient(app):
                pass
        finally:
            key_file.parent.chmod(0o700)

    def test_the_configured_key_wins_over_the_file(self, app: FastAPI, key_file: Path) -> None:
        key_file.write_text("left alone")
        key_file.chmod(0o644)
        configured = other_app(
            app, readiness_audit_signing_key=base64.b64encode(AUDIT_SEED).decode()
        )
        with TestClient(configured) as configured_client:
            assert public_key(configured_client, auth(ADMIN_SECRET))["key_id"] == key_id(AUDIT_SEED)
        configured.state.database.dispose()
        assert key_file.read_text() == "left alone"


def test_the_key_file_sits_beside_the_sqlite_file_or_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    beside = Settings(database_url=f"sqlite:///{tmp_path}/data/readiness.db")
    assert beside.audit_signing_key_file() == tmp_path / "data" / "readiness-audit.key"
    relative = Settings(database_url="sqlite:///./readiness.db")
    assert relative.audit_signing_key_file() == tmp_path / "readiness-audit.key"
    postgres = Settings(database_url="postgresql+psycopg://u@db:5432/readiness")
    assert postgres.audit_signing_key_file() == tmp_path / "readiness-audit.key"
    named = Settings(
        database_url="postgresql+psycopg://u@db:5432/readiness",
        readiness_audit_signing_key_file="secrets/audit.key",
    )
    assert named.audit_signing_key_file() == tmp_path / "secrets" / "audit.key"


def _make_key(path: str, barrier: Any, answers: Any) -> None:
    from app.audit import keyfile

    barrier.wait()
    answers.put(keyfile.load_or_create(Path(path)))


@pytest.mark.slow
def test_processes_racing_to_make_the_key_file_agree_on_one(tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    racers = 6
    for attempt in range(3):
        path = tmp_path / f"race-{attempt}.key"
        barrier, answers = context.Barrier(racers), context.Queue()
        processes = [
            context.Process(target=_make_key, args=(str(path), barrier, answers))
            for _ in range(racers)
        ]
        for process in processes:
            process.start()
        results = [answers.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=30)
        assert {seed for seed, _made in results} == {seed_in(path)}
        assert sum(made for _seed, made in results) == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == [f"race-{n}.key" for n in range(3)]


def _server_env(database_url: str, key_file: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "READINESS_BOOTSTRAP_ADMIN_KEY": ADMIN_SECRET,
        "READINESS_AUDIT_SIGNING_KEY_FILE": str(key_file),
        "READINESS_REEVALUATE_ON_START": "false",
        "READINESS_MIRROR_WARMUP": "false",
        "READINESS_WEBHOOK_DISPATCH": "false",
        "LOG_LEVEL": "warning",
    }


@pytest.mark.slow
def test_two_servers_starting_at_once_sign_with_one_key(
    client: TestClient, database_url: str, tmp_path: Path
) -> None:
    if os.environ.get("READINESS_AUDIT_SIGNING_KEY"):
        pytest.skip("the environment configures a signing key")
    key_file = tmp_path / "readiness-audit.key"
    answers: dict[int, dict[str, Any]] = {}
    logs: dict[int, str] = {}
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            with make_run_server(_server_env(database_url, key_file), tmp_path) as server:
                response = httpx.get(
                    f"{server.base}/v1/audit/checkpoint", headers=auth(ADMIN_SECRET)
                )
                answers[n] = response.json()
                logs[n] = server.log()
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert answers[0]["key_id"] == answers[1]["key_id"] == key_id(seed_in(key_file))
    # Each says, on every start, that the key is for trying out only.
    for log in logs.values():
        assert "READINESS_AUDIT_SIGNING_KEY is not set" in log
        assert str(key_file) in log


@pytest.mark.slow
def test_a_server_with_a_key_file_others_may_read_refuses_to_start(
    database_url: str, tmp_path: Path
) -> None:
    if os.environ.get("READINESS_AUDIT_SIGNING_KEY"):
        pytest.skip("the environment configures a signing key")
    key_file = tmp_path / "readiness-audit.key"
    key_file.write_text(base64.b64encode(bytes(32)).decode())
    key_file.chmod(0o644)
    port = free_port()
    finished = subprocess.run(
        make_run_command(port),
        cwd=PROJECT_ROOT,
        env={**os.environ, **_server_env(database_url, key_file)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert f"cannot start: the audit signing key file {key_file} has mode 0644" in finished.stderr


class TestRotation:
    def test_a_checkpoint_signed_before_a_rotation_still_verifies_by_its_key_id(
        self, app: FastAPI, client: TestClient, viewer: dict[str, str], admin: dict[str, str]
    ) -> None:
        old = client.get("/v1/audit/checkpoint", headers=viewer).json()
        assert old["key_id"] == key_id(AUDIT_SEED)
        new_seed = bytes(range(100, 132))
        rotated = other_app(app, readiness_audit_signing_key=base64.b64encode(new_seed).decode())
        with TestClient(rotated) as rotated_client:
            assert public_key(rotated_client, viewer) == {
                "key_id": key_id(new_seed),
                "algorithm": "Ed25519",
                "public_key": base64.b64encode(raw_public(new_seed)).decode(),
            }
            response = rotated_client.post("/v1/audit/verify", json=old, headers=admin)
            assert response.status_code == 200, response.text
            assert response.json()["ok"] is True
            new = rotated_client.get("/v1/audit/checkpoint", headers=viewer).json()
            assert new["key_id"] == key_id(new_seed)

            # Still refused: an old key_id with a signature it did not make.
            forged = {**old, "signature": new["signature"]}
            response = rotated_client.post("/v1/audit/verify", json=forged, headers=admin)
            assert response.status_code == 422
            assert response.json()["type"] == "/problems/invalid-checkpoint"

            listed = rotated_client.get("/v1/audit/public-keys", headers=viewer)
            assert listed.status_code == 200, listed.text
            keys = {item["key_id"]: item for item in listed.json()["items"]}
            assert keys == {
                seed_id: {
                    "key_id": seed_id,
                    "algorithm": "Ed25519",
                    "public_key": base64.b64encode(raw_public(seed)).decode(),
                    "first_used_at": "2026-03-02T09:00:00Z",
                }
                for seed, seed_id in ((AUDIT_SEED, old["key_id"]), (new_seed, new["key_id"]))
            }
        rotated.state.database.dispose()

    def test_a_checkpoint_naming_a_key_the_service_never_signed_with_is_refused(
        self, client: TestClient, viewer: dict[str, str], admin: dict[str, str]
    ) -> None:
        stranger = bytes(range(50, 82))
        checkpoint = client.get("/v1/audit/checkpoint", headers=viewer).json()
        message = f"{checkpoint['event_id']}:{checkpoint['hash']}:{checkpoint['signed_at']}"
        signed = {
            **checkpoint,
            "key_id": key_id(stranger),
            "signature": base64.b64encode(
                Ed25519PrivateKey.from_private_bytes(stranger).sign(message.encode())
            ).decode(),
        }
        response = client.post("/v1/audit/verify", json=signed, headers=admin)
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/invalid-checkpoint"
        [error] = response.json()["errors"]
        assert (error["field"], error["message"]) == ("key_id", "names no key of this service")

    def test_a_public_key_written_into_the_database_under_a_kept_id_is_not_trusted(
        self,
        app: FastAPI,
        client: TestClient,
        engine: Engine,
        viewer: dict[str, str],
        admin: dict[str, str],
    ) -> None:
        """Someone who can write the database replaces an old key with their own to pass off
        a checkpoint for a rewritten log: the key no longer gives its id, so it is refused."""
        old = client.get("/v1/audit/checkpoint", headers=viewer).json()
        forger = bytes(range(7, 39))
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE audit_public_keys SET public_key = :key WHERE key_id = :id"),
                {"key": base64.b64encode(raw_public(forger)).decode(), "id": old["key_id"]},
            )
        message = f"{old['event_id']}:{old['hash']}:{old['signed_at']}"
        forged = {
            **old,
            "signature": base64.b64encode(
                Ed25519PrivateKey.from_private_bytes(forger).sign(message.encode())
            ).decode(),
        }
        rotated = other_app(app, readiness_audit_signing_key=base64.b64encode(bytes(32)).decode())
        with TestClient(rotated) as rotated_client:
            response = rotated_client.post("/v1/audit/verify", json=forged, headers=admin)
        rotated.state.database.dispose()
        assert response.status_code == 422
        assert response.json()["type"] == "/problems/invalid-checkpoint"

    def test_the_kept_keys_come_in_pages(
        self, app: FastAPI, client: TestClient, viewer: dict[str, str]
    ) -> None:
        seeds = [bytes([n]) * 32 for n in range(1, 6)]
        for seed in seeds:
            signer = other_app(app, readiness_audit_signing_key=base64.b64encode(seed).decode())
            with TestClient(signer) as signer_client:
                assert signer_client.get("/v1/audit/checkpoint", headers=viewer).status_code == 200
            signer.state.database.dispose()
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/audit/public-keys", params=params, headers=viewer).json()
            seen.extend(item["key_id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == sorted(key_id(seed) for seed in seeds)
        bad = client.get("/v1/audit/public-keys", params={"cursor": "nope"}, headers=viewer)
        assert bad.status_code == 400
