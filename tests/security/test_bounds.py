"""Bounds on everything a client sends (OWASP API4:2023, unrestricted resource consumption):
every string, list and map of every request body has a limit the document states and the
service enforces with a 422 naming the field; numbers are finite; page sizes are bounded;
cursors a client made up are 400/422, never 500; bodies over the size limit are 413.

The cases are generated from the OpenAPI document and the base bodies of `bodies.py`, so a
field or route added later is covered, or fails here until it is."""

import base64
import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.pagination import MAX_LIMIT
from tests.security.bodies import (
    BASE_BODIES,
    DOCUMENT,
    FOREIGN_BODIES,
    PATH_VALUES,
    PROBLEM,
    SCHEMAS,
    Leaf,
    Schemas,
    body_operations,
    field_errors,
    leaves,
    missing_fields,
    prepare,
    request_schema,
    url,
    with_value,
)


def _leaves() -> list[tuple[str, str, Leaf]]:
    found = []
    for (method, path), body in BASE_BODIES.items():
        operation = DOCUMENT["paths"][path][method.lower()]
        for leaf in leaves(SCHEMAS, request_schema(operation), body):
            found.append((method, path, leaf))
    return found


LEAVES = _leaves()


def _cases(*kinds: str) -> list[Any]:
    return [
        pytest.param(method, path, leaf, id=f"{method} {path} {leaf.field or '<body>'}")
        for method, path, leaf in LEAVES
        if leaf.kind in kinds
    ]


def send(client: TestClient, headers: dict[str, str], method: str, path: str, body: Any) -> Any:
    return client.request(method, url(path), json=body, headers=headers)


def send_raw(
    client: TestClient, headers: dict[str, str], method: str, path: str, content: str
) -> Any:
    return client.request(
        method,
        url(path),
        content=content.encode(),
        headers={**headers, "Content-Type": "application/json"},
    )


# The table itself.


def test_every_operation_with_a_body_has_a_base_body(app: FastAPI) -> None:
    every = {(method, path) for method, path, _ in body_operations(app, foreign=True)}
    assert every == set(BASE_BODIES) | set(FOREIGN_BODIES)
    assert not set(BASE_BODIES) & set(FOREIGN_BODIES)


def test_base_bodies_set_every_field(app: FastAPI) -> None:
    schemas = Schemas(app.openapi())
    for method, path, operation in body_operations(app):
        body = BASE_BODIES[(method, path)]
        assert missing_fields(schemas, request_schema(operation), body) == [], (method, path)


def test_every_base_body_is_accepted(client: TestClient, admin: dict[str, str]) -> None:
    # So each refusal below is the mutated field's doing, not the rest of the body's.
    prepare(client, admin)
    for (method, path), body in BASE_BODIES.items():
        response = send(client, admin, method, path, body)
        assert response.status_code in (200, 201), (method, path, response.text)


# What the document states.


def test_document_bounds_every_string_list_and_map_of_every_request_body() -> None:
    unbounded = []
    for method, path, leaf in LEAVES:
        schema = leaf.schema
        bounded = {
            # A date-time's grammar bounds it: the parser refuses anything longer than a
            # moment (checked below).
            "string": "maxLength" in schema or schema.get("format") == "date-time",
            "key": "maxLength" in schema,
            "array": "maxItems" in schema,
            # A map keyed by an enum is bounded by it (walked as no "key" leaf).
            "map": "maxProperties" in schema
            or "enum" in SCHEMAS.resolve(schema.get("propertyNames", {})),
            "number": True,
        }[leaf.kind]
        if not bounded:
            unbounded.append(f"{method} {path} {leaf.kind} {leaf.field}")
    assert unbounded == []


def _parameters() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, parameter)
        for path, operations in DOCUMENT["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
    ]


# Known gaps, each a fix for the file's owner: the readiness route reads its path key
# without the `max_length` every other route's `KeyPath` has.
UNBOUNDED_PARAMETERS: set[tuple[str, str, str]] = set()


def test_document_bounds_every_parameter() -> None:
    unbounded = set()
    for method, path, parameter in _parameters():
        schema = SCHEMAS.resolve(parameter["schema"])
        kind = schema.get("type")
        if kind == "array":
            ok = "maxItems" in schema and "maxLength" in SCHEMAS.resolve(schema["items"])
        elif kind == "string":
            ok = "maxLength" in schema or "enum" in schema or schema.get("format") == "date-time"
        elif kind == "integer":
            ok = "maximum" in schema
        else:
            ok = "enum" in schema
        if not ok:
            unbounded.add((method, path, parameter["name"]))
    assert unbounded == UNBOUNDED_PARAMETERS


# What the service enforces.


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("method", "path", "leaf"), _cases("string"))
def test_over_long_strings_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], method: str, path: str, leaf: Leaf
) -> None:
    if "maxLength" in leaf.schema:
        value = "x" * (leaf.schema["maxLength"] + 1)
    else:  # a date-time
        value = "2026-03-02T09:00:00" + "0" * 5000 + "Z"
    body = with_value(BASE_BODIES[(method, path)], leaf.path, value)
    errors = field_errors(send(client, admin, method, path, body))
    assert leaf.field in {error["field"] for error in errors}, errors


@pytest.mark.parametrize(("method", "path", "leaf"), _cases("key"))
def test_over_long_map_keys_are_422_naming_the_map(
    client: TestClient, admin: dict[str, str], method: str, path: str, leaf: Leaf
) -> None:
    first = next(iter(leaf.value.values()))
    value = {**leaf.value, "k" * (leaf.schema["maxLength"] + 1): first}
    body = with_value(BASE_BODIES[(method, path)], leaf.path, value)
    errors = field_errors(send(client, admin, method, path, body))
    assert any(error["field"].startswith(leaf.field + ".") for error in errors), errors


def _item(leaf: Leaf) -> Any:
    if leaf.value:
        return leaf.value[0]
    return SCHEMAS.resolve(leaf.schema["items"])["enum"][0]


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("method", "path", "leaf"), _cases("array"))
def test_over_long_lists_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], method: str, path: str, leaf: Leaf
) -> None:
    value = [_item(leaf)] * (leaf.schema["maxItems"] + 1)
    body = with_value(BASE_BODIES[(method, path)], leaf.path, value)
    errors = field_errors(send(client, admin, method, path, body))
    assert {"field": leaf.field, "code": "too_long"}.items() <= _by_field(errors, leaf.field)


def _by_field(errors: list[dict[str, str]], field: str) -> Any:
    matching = [error for error in errors if error["field"] == field]
    assert matching, errors
    return matching[0].items()


def _names(leaf: Leaf, count: int) -> list[str]:
    names = SCHEMAS.resolve(leaf.schema.get("propertyNames", {}))
    pattern = names.get("pattern")
    made = [f"k{index}" for index in range(count)]
    assert all(pattern is None or re.search(pattern, name) for name in made)
    return made


@pytest.mark.parametrize(
    ("method", "path", "leaf"),
    [case for case in _cases("map") if "maxProperties" in case.values[2].schema],
)
def test_over_large_maps_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], method: str, path: str, leaf: Leaf
) -> None:
    first = next(iter(leaf.value.values()))
    value = dict.fromkeys(_names(leaf, leaf.schema["maxProperties"] + 1), first)
    body = with_value(BASE_BODIES[(method, path)], leaf.path, value)
    errors = field_errors(send(client, admin, method, path, body))
    assert {"field": leaf.field, "code": "too_long"}.items() <= _by_field(errors, leaf.field)


# Python's json module (which FastAPI parses with) reads these; JSON itself has no such
# numbers, and none of them is a value this service can score or store.
NOT_FINITE = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", str(10**400))


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("method", "path", "leaf"), _cases("number"))
def test_numbers_that_are_not_finite_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], method: str, path: str, leaf: Leaf
) -> None:
    body = with_value(BASE_BODIES[(method, path)], leaf.path, "@number@")
    for literal in NOT_FINITE:
        content = json.dumps(body).replace('"@number@"', literal)
        response = send_raw(client, admin, method, path, content)
        errors = field_errors(response)
        matching = [error for error in errors if error["field"] == leaf.field]
        assert matching, (literal, errors)
        if leaf.schema.get("type") == "number" and literal != NOT_FINITE[-1]:
            # Said plainly, not as "should be less than or equal to 100". (The huge integer
            # is refused as no valid number, since no float holds it.)
            assert matching[0]["code"] == "finite_number", (literal, matching)


def _nested(depth: int) -> bytes:
    # Lists at even depths, objects at odd ones: both kinds of container.
    if depth % 2:
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b"[" * depth + b"]" * depth


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), list(BASE_BODIES))
def test_deeply_nested_bodies_are_client_errors(
    client: TestClient, admin: dict[str, str], method: str, path: str
) -> None:
    # A few KB nested about as deep as the JSON parser goes once overflowed the stack of a
    # recursive check and of an enum's error message (a 500); the depths around that limit
    # are all tried, in a field and as the whole body. Bodies nest 16 levels at most.
    headers = {**admin, "Content-Type": "application/json"}
    field = next(iter(BASE_BODIES[(method, path)]))
    for depth in (20, 64, *range(850, 1001), 5000, 100_000):
        for content in (_nested(depth), b'{"' + field.encode() + b'": ' + _nested(depth) + b"}"):
            response = client.request(method, url(path), content=content, headers=headers)
            assert response.status_code in (400, 422), (depth, response.text)
            assert response.headers["content-type"] == PROBLEM
            assert response.json()["type"] in (
                "/problems/malformed-json",
                "/problems/validation-error",
            )


# Page sizes and cursors, on every list.


def _lists() -> list[Any]:
    return [
        pytest.param(path, cursor, id=path)
        for path, operations in DOCUMENT["paths"].items()
        for method, operation in operations.items()
        for cursor in [
            parameter["name"]
            for parameter in operation.get("parameters", [])
            if parameter["name"] in ("cursor", "after") and parameter["in"] == "query"
        ]
        if method == "get"
    ]


LISTS = _lists()


def test_every_list_bounds_its_page_size() -> None:
    assert len(LISTS) >= 10
    for path, operations in DOCUMENT["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["name"] == "limit":
                assert parameter["schema"]["minimum"] == 1, path
                assert parameter["schema"]["maximum"] == MAX_LIMIT, path


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("path", "cursor_name"), LISTS)
def test_page_size_out_of_range_is_422(
    client: TestClient, admin: dict[str, str], path: str, cursor_name: str
) -> None:
    prepare(client, admin)
    for limit in ("0", "-1", str(MAX_LIMIT + 1), str(10**30), "ten", "1.5", ""):
        errors = field_errors(client.get(url(path), params={"limit": limit}, headers=admin))
        assert [error["field"] for error in errors] == ["limit"], limit
    assert client.get(url(path), params={"limit": MAX_LIMIT}, headers=admin).status_code == 200


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Not a cursor of any list: garbled, junk in valid base64, the wrong JSON, out-of-range or
# non-integer positions, a position of the wrong kind for both kinds of list.
FORGED = [
    "garbage!!",
    "%%%",
    "a",
    "====",
    "\u00e9t\u00e9",
    _b64(b"\xff\xfe\xfd\x00junk"),
    _b64(b"not json at all"),
    _b64(b"[1, 2]"),
    _b64(b'"p"'),
    _b64(b"42"),
    _b64(b'{"q": 1}'),
    _b64(b'{"p": null}'),
    _b64(b'{"p": true}'),
    _b64(b'{"p": 1.5}'),
    _b64(b'{"p": 1e999}'),
    _b64(b'{"p": NaN}'),
    _b64(b'{"p": -1}'),
    _b64(b'{"p": 2147483648}'),
    _b64(b'{"p": 1' + b"0" * 100 + b"}"),
    _b64(b'{"p": {"p": 1}}'),
    _b64(b'{"p": [1]}'),
    _b64(b'{"p": ' + b"[" * 60 + b"]" * 60 + b"}"),
]


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("path", "cursor_name"), LISTS)
def test_forged_cursors_are_client_errors(
    client: TestClient, admin: dict[str, str], path: str, cursor_name: str
) -> None:
    prepare(client, admin)
    for cursor in [*FORGED, "x" * 201, _b64(b'{"p": "' + b"a" * 300 + b'"}')]:
        response = client.get(url(path), params={cursor_name: cursor}, headers=admin)
        assert response.status_code in (400, 422), (cursor, response.text)
        assert response.headers["content-type"] == PROBLEM
        problem = response.json()
        assert problem["type"] in ("/problems/invalid-cursor", "/problems/validation-error")
        assert problem["detail"]
        if response.status_code == 422:  # too long to be one: named like any other field
            assert [error["field"] for error in problem["errors"]] == [cursor_name]


@pytest.mark.slow
def test_cursors_of_another_kind_of_list_are_400(client: TestClient, admin: dict[str, str]) -> None:
    # Evidence pages by control name, the audit's public keys by key id, every other list by
    # a number: each kind's cursor is
    # refused by the other, and a cursor with a character changed never fails the server.
    prepare(client, admin)
    for control in ("training", "monitoring"):
        client.put(f"/v1/systems/drafty/evidence/{control}", json={"status": "met"}, headers=admin)
    by_name = client.get("/v1/systems/drafty/evidence", params={"limit": 1}, headers=admin)
    name_cursor = by_name.json()["next_cursor"]
    events = client.get("/v1/events", params={"limit": 1}, headers=admin)
    number_cursor = events.json()["next_cursor"]
    assert name_cursor
    assert number_cursor
    for path, cursor_name in (case.values for case in LISTS):
        by_name = path.endswith(("/evidence", "/public-keys"))
        foreign = number_cursor if by_name else name_cursor
        response = client.get(url(path), params={cursor_name: foreign}, headers=admin)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["type"] == "/problems/invalid-cursor"
        for cursor in (name_cursor, number_cursor):
            for index in range(len(cursor)):
                for replacement in "A_-~":
                    tampered = cursor[:index] + replacement + cursor[index + 1 :]
                    response = client.get(url(path), params={cursor_name: tampered}, headers=admin)
                    assert response.status_code in (200, 400, 422), (path, tampered)


# Body size.


def _writes() -> list[Any]:
    return [
        pytest.param(method.upper(), path, id=f"{method.upper()} {path}")
        for path, operations in DOCUMENT["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    ]


@pytest.mark.slow  # a request per field or operation
@pytest.mark.parametrize(("method", "path"), _writes())
def test_bodies_over_the_limit_are_413_on_every_write(
    database_url: str, admin: dict[str, str], method: str, path: str
) -> None:
    # A small limit so the test sends little; the shipped 1 MiB one is tested in test_errors.
    settings = Settings(database_url=database_url, max_body_bytes=2048)
    application = create_app(settings)
    try:
        with TestClient(application, raise_server_exceptions=False) as small:
            path = url(path.replace("{key_id}", "99").replace("{waiver_id}", "99"))
            fits = small.request(method, path, content=b"{" + b" " * 2000 + b"}", headers=admin)
            assert fits.status_code != 413
            response = small.request(
                method,
                path,
                content=b"{" + b" " * 2048 + b"}",
                headers={**admin, "Content-Type": "application/json"},
            )
    finally:
        application.state.database.dispose()
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "/problems/payload-too-large"
    assert "2048 bytes" in problem["detail"]


def test_path_values_name_real_resources() -> None:
    # The placeholders every generated request fills in.
    assert set(PATH_VALUES) >= {
        match
        for path in DOCUMENT["paths"]
        for match in re.findall(r"\{(\w+)\}", path)
        if match not in ("key_id", "waiver_id", "version")
    }
