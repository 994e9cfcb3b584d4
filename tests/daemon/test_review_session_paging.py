"""Review: a repeated ``limit`` or ``before`` on ``GET /v1/sessions`` is an ambiguous page
request; the daemon must refuse it with a 400, not silently honour the first value."""

from __future__ import annotations

import httpx
import pytest

from .conftest import RunningDaemon


@pytest.mark.parametrize("repeat", ["limit=1&limit=5", "before={0}&before={1}"])
def test_a_repeated_page_parameter_is_a_400(daemon: RunningDaemon, http: httpx.Client,
                                            repeat: str) -> None:
    with daemon.client("alice") as alice:
        made = [alice.create_session()["id"] for _ in range(3)]
    answer = http.get("/v1/sessions?" + repeat.format(made[2], made[0]))
    assert answer.status_code == 400, answer.text


@pytest.mark.xfail(strict=True, reason="review: an over-long before gets aiohttp's plain-text 400")
def test_an_over_long_before_is_a_json_400(daemon: RunningDaemon, http: httpx.Client) -> None:
    """docs/daemon.md: errors are ``{"error": {"type", "message"}}``; a ``before`` longer than
    aiohttp's 8,190-byte request line is answered by aiohttp itself in plain text, so
    ``Client.sessions_page`` reports a BadResponse instead of an InvalidRequest."""
    answer = http.get("/v1/sessions?before=" + "s" * 9000)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:100]
    assert answer.json()["error"]["type"] == "InvalidRequest"
