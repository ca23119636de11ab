"""`readiness releases`: a system's releases from GET /v1/systems/{key}/releases, newest
first, one row per period a release spent in a stage, following next_cursor up to --limit;
the exit codes of the other commands."""

import re

import pytest

from tests.cli.conftest import CliRunner, Proxy, Service


def released(service: Service, key: str = "drafter") -> list[dict[str, object]]:
    """A minimal-tier system (its pilot gate passes at once) entering pilot with 1.0.0, then
    1.0.1 and 1.0.2 as release moves within pilot: the transitions, oldest first."""
    service.make_system(key)
    return [service.move(key, "pilot", version) for version in ("1.0.0", "1.0.1", "1.0.2")]


@pytest.mark.slow
def test_releases_lists_newest_first_the_current_one_open(service: Service, cli: CliRunner) -> None:
    moves = released(service)
    run = cli("releases", "drafter", role="viewer")
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert re.split(r"\s*[┃│]\s*", lines[0]) == [
        "version",
        "stage",
        "entered",
        "left",
        "transition",
    ]
    rows = [re.split(r"\s*[┃│]\s*", line) for line in lines[2:]]
    assert [(row[0], row[1], row[4]) for row in rows] == [
        ("1.0.2", "pilot", str(moves[2]["id"])),
        ("1.0.1", "pilot", str(moves[1]["id"])),
        ("1.0.0", "pilot", str(moves[0]["id"])),
    ]
    assert rows[0][3] == "current"
    # Each earlier release left when the next one entered.
    assert rows[1][3] == rows[0][2]
    assert rows[2][3] == rows[1][2]


@pytest.mark.slow
def test_releases_as_json_are_the_services_items(service: Service, cli: CliRunner) -> None:
    moves = released(service)
    run = cli("releases", "drafter", "--format", "json", role="viewer")
    assert run.code == 0, run.stderr
    answer = run.json()
    assert answer == {
        "items": service.get("/v1/systems/drafter/releases")["items"],
        "next_cursor": None,
    }
    current = answer["items"][0]
    assert (current["version"], current["uri"], current["stage"]) == (
        "1.0.2",
        "models:/drafter/1.0.2",
        "pilot",
    )
    assert (current["left_at"], current["transition_id"]) == (None, moves[2]["id"])


@pytest.mark.slow
def test_releases_follows_the_cursor_up_to_the_limit(
    service: Service, cli: CliRunner, proxy: Proxy
) -> None:
    """The service answers pages of two here (the proxy lowers the page size the tool asks
    for), so five releases take three pages; --limit stops early and says more are left."""
    service.make_system("drafter")
    for version in ("1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"):
        service.move("drafter", "pilot", version)
    proxy.rewrites.append(
        lambda target: re.sub(r"limit=(\d+)", lambda m: f"limit={min(int(m[1]), 2)}", target)
    )

    run = cli("releases", "drafter", "--format", "json", "--limit", "10", url=proxy.url)
    assert run.code == 0, run.stderr
    assert [item["version"] for item in run.json()["items"]] == [
        "1.0.4",
        "1.0.3",
        "1.0.2",
        "1.0.1",
        "1.0.0",
    ]
    assert run.json()["next_cursor"] is None
    pages = [path for method, path, _ in proxy.seen if method == "GET"]
    assert len(pages) == 3

    proxy.seen.clear()
    run = cli("releases", "drafter", "--limit", "3", url=proxy.url)
    assert run.code == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()[2:5]] == [
        "1.0.4",
        "1.0.3",
        "1.0.2",
    ]
    assert run.stdout.splitlines()[-1] == "older releases not shown: raise --limit (now 3)"
    assert len([path for method, path, _ in proxy.seen if method == "GET"]) == 2


@pytest.mark.slow
def test_a_system_without_releases(service: Service, cli: CliRunner) -> None:
    service.make_system("drafter")
    service.move("drafter", "pilot")  # a move naming no release
    run = cli("releases", "drafter")
    assert (run.code, run.stdout) == (0, "drafter: no release recorded yet\n")
    assert cli("releases", "drafter", "--format", "json").json() == {
        "items": [],
        "next_cursor": None,
    }


@pytest.mark.slow
def test_releases_exit_codes(service: Service, cli: CliRunner) -> None:
    unknown = cli("releases", "nobody")
    assert unknown.code == 5
    assert unknown.stderr.startswith("readiness: HTTP 404 not-found:")
    refused = cli("releases", "nobody", role="rdy_not_a_key_of_this_service")
    assert refused.code == 4
    assert refused.stderr.startswith("readiness: HTTP 401")
