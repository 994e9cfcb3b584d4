"""GET /metrics on a real daemon: the counts of a known workload, the operator's only
(Unix socket; TCP only with --metrics-tcp; a tenant's token never unlocks it)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.conftest import RunningDaemon

PRINTED = "printed-by-the-cell-7f3a"


def scrape(running: RunningDaemon) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=str(running.socket))
    with httpx.Client(transport=transport, base_url="http://rlmbox") as http:
        return http.get("/metrics")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_scrape_after_a_known_workload(daemon: RunningDaemon) -> None:
    """alice: two sessions, three cells (one an error) with one llm_query, one session
    closed; bob: nothing. The scrape says exactly that, and no cell's code or output."""
    with daemon.client("alice") as alice:
        first = alice.create_session()["id"]
        second = alice.create_session()["id"]
        assert alice.exec(first, f"print('{PRINTED}', llm_query('hi'))").status == "ok"
        assert alice.exec(first, "x = 1").status == "ok"
        assert alice.exec(second, "1/0").status == "error"
        alice.close_session(second)
    response = scrape(daemon)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return got.get((name, frozenset(labels.items())), 0.0)

    alice_process = {"tenant": "alice", "backend": "process"}
    assert value("rlmbox_sessions_created_total", **alice_process) == 2
    assert value("rlmbox_sessions_active", **alice_process) == 1
    assert value("rlmbox_sessions_ended_total", **alice_process, status="closed") == 1
    assert value("rlmbox_cells_total", **alice_process, status="ok") == 2
    assert value("rlmbox_cells_total", **alice_process, status="error") == 1
    assert value("rlmbox_cell_duration_seconds_count", backend="process") == 3
    assert value("rlmbox_host_calls_total", tenant="alice", function="llm_query",
                 decision="permit", outcome="ok") == 1
    assert value("rlmbox_lm_tokens_total", tenant="alice", model="scripted",
                 direction="input") >= 1
    assert value("rlmbox_audit_sync_seconds_count") >= 3
    assert value("rlmbox_audit_write_failures_total") == 0
    assert not any(dict(labels).get("tenant") == "bob" for _, labels in got)
    assert PRINTED not in response.text
    assert "llm_query('hi')" not in response.text


def test_tcp_serves_metrics_only_when_the_operator_says_so(
        start_daemon: Callable[..., RunningDaemon]) -> None:
    """Without --metrics-tcp the TCP listener has no /metrics, even for a valid tenant
    token; the Unix socket has it. With the flag, TCP serves it."""
    closed = start_daemon(tcp="127.0.0.1:0")
    assert closed.daemon.tcp_address is not None
    host, port = closed.daemon.tcp_address
    token = closed.token("alice")
    with httpx.Client(base_url=f"http://{host}:{port}") as http:
        assert http.get("/metrics").status_code == 404
        assert http.get("/metrics", headers={"Authorization": f"Bearer {token}"}
                        ).status_code == 404
        assert http.get("/v1/sessions", headers={"Authorization": f"Bearer {token}"}
                        ).status_code == 200
    assert scrape(closed).status_code == 200
    closed.stop()

    opened = start_daemon(tcp="127.0.0.1:0", metrics_tcp=True)
    assert opened.daemon.tcp_address is not None
    host, port = opened.daemon.tcp_address
    with httpx.Client(base_url=f"http://{host}:{port}") as http:
        response = http.get("/metrics")
    assert response.status_code == 200
    assert "rlmbox_audit_appends_total 0.0" in response.text   # every family, from start
