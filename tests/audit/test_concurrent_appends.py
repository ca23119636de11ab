"""Writers appending at once still make one linear chain: each event links to the one
committed before it (on PostgreSQL through the ordered append, on SQLite through its one
writer)."""

import threading

import httpx

from tests.conftest import ADMIN_SECRET, auth
from tests.factories import system_body

WRITERS = 16
CONTROLS = ("training", "data_rules", "monitoring", "training", "workflow")


def test_concurrent_writers_keep_the_chain_linear(live_server: str) -> None:
    headers = auth(ADMIN_SECRET)
    barrier = threading.Barrier(WRITERS)
    failures: list[str] = []

    def write(number: int) -> None:
        with httpx.Client(base_url=live_server, headers=headers, timeout=60) as http:
            key = f"writer-{number}"
            barrier.wait()
            created = http.post("/v1/systems", json=system_body(key=key, tier="minimal"))
            if created.status_code != 201:
                failures.append(created.text)
            for control in CONTROLS:
                recorded = http.put(f"/v1/systems/{key}/evidence/{control}", json={"status": "met"})
                if recorded.status_code != 200:
                    failures.append(recorded.text)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []

    with httpx.Client(base_url=live_server, headers=headers, timeout=60) as http:
        events: list[dict[str, str]] = []
        params = {"limit": "200"}
        while True:
            page = http.get("/v1/events", params=params).json()
            events += page["items"]
            if len(page["items"]) < 200:
                break
            params["after"] = page["next_cursor"]
        verification = http.get("/v1/audit/verify").json()
    assert len(events) >= WRITERS * (1 + len(CONTROLS))
    assert [event["prev_hash"] for event in events[1:]] == [event["hash"] for event in events[:-1]]
    assert verification == {
        "ok": True,
        "checked": len(events),
        "first_bad_id": None,
        "reason": None,
    }
