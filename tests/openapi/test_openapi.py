import json

from fastapi import FastAPI

from tests.conftest import project_path


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
                assert {"401", "403"} <= operation["responses"].keys(), (method, path)
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
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = (method, path)
            assert operation.get("summary"), where
            assert operation.get("description"), where
            assert set(operation["tags"]) <= described_tags, where
            expected_security = (
                [] if path in PUBLIC_PATHS else [{"HTTPBearer": []}, {"OidcToken": []}]
            )
            assert operation["security"] == expected_security, where
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = schemas[media["schema"]["$ref"].rsplit("/", 1)[-1]]
                assert "example" in media or "examples" in media or schema.get("examples"), where
