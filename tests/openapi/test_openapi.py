import json
from typing import Any

from fastapi import FastAPI

from app.openapi_docs import WEBHOOK_SIGNATURE_EXTENSION
from tests.conftest import project_path


def signed_webhook(operation: dict[str, Any]) -> bool:
    """An operation that takes no key but a signed request: it answers 401, never 403."""
    return WEBHOOK_SIGNATURE_EXTENSION in operation


def test_committed_document_matches_the_app(app: FastAPI) -> None:
    committed = json.loads(project_path("openapi", "openapi.json").read_text())
    assert committed == app.openapi(), "openapi/openapi.json is out of date: run `make openapi`"


def test_operation_ids_are_camel_case_and_unique(app: FastAPI) -> None:
    ids = [
        operation["operationId"]
        for path in app.openapi()["paths"].values()
        for operation in path.values()
    ]
    assert len(ids) == len(set(ids))
    assert all(op[0].islower() and "_" not in op for op in ids), ids


def test_errors_are_documented_as_problem_details(app: FastAPI) -> None:
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                needed = {"401"} if signed_webhook(operation) else {"401", "403"}
                assert needed <= operation["responses"].keys(), (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and status != "422":
                    assert "application/problem+json" in response["content"], (method, path, status)


PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics"}


def test_document_is_complete(app: FastAPI) -> None:
    """What consumers and the linters of `make contract` expect of every part of it."""
    document = app.openapi()
    assert {"description", "contact", "license", "version"} <= document["info"].keys()
    assert document["servers"]
    described_tags = {tag["name"] for tag in document["tags"] if tag.get("description")}
    schemas = document["components"]["schemas"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert (schemes["OidcToken"]["scheme"], schemes["OidcToken"]["bearerFormat"]) == (
        "bearer",
        "JWT",
    )
    assert not [name for name in schemas if name.endswith(("-Input", "-Output"))]
    # Two models of one name in different modules get long module-path names instead.
    assert not [name for name in schemas if name.startswith("app__")]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = (method, path)
            assert operation.get("summary"), where
            assert operation.get("description"), where
            assert set(operation["tags"]) <= described_tags, where
            expected_security = (
                []
                if path in PUBLIC_PATHS or signed_webhook(operation)
                else [{"HTTPBearer": []}, {"OidcToken": []}]
            )
            assert operation["security"] == expected_security, where
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = schemas[media["schema"]["$ref"].rsplit("/", 1)[-1]]
                assert "example" in media or "examples" in media or schema.get("examples"), where


def test_the_mlflow_webhook_documents_its_signature_instead_of_a_key(app: FastAPI) -> None:
    document = app.openapi()
    operation = document["paths"]["/v1/integrations/mlflow/webhook"]["post"]
    assert operation["security"] == []
    assert operation[WEBHOOK_SIGNATURE_EXTENSION] == "X-MLflow-Signature"
    assert "x-required-role" not in operation
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    # Its own replay protection (the delivery id), not the Idempotency-Key of other POSTs.
    assert set(headers) == {"X-MLflow-Signature", "X-MLflow-Delivery-Id", "X-MLflow-Timestamp"}
    assert all(header["required"] and header["description"] for header in headers.values())
    body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][body.rsplit("/", 1)[-1]]
    assert schema["examples"][0]["entity"] == "model_version_alias"
    assert operation["responses"]["401"]["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert (
        "MlflowWebhookResult"
        in operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    )
