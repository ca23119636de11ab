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
