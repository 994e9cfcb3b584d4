"""Metrics leak nothing model code chose: a cell that forges calls to made-up function
names (one per name, to blow up the series count) and prints a marker finds neither in
a scrape; the made-up names all count as one ``unknown`` function."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from .harness import Runtimes, watched_session
from .test_protocol_attacks import FORGE

MARKER = "cell-chosen-label-5d1e"
FORGED_NAMES = 40


def test_made_up_function_names_do_not_become_label_values(runtimes: Runtimes) -> None:
    registry = CollectorRegistry()
    rt = runtimes(metrics=registry)
    code = (FORGE + f"for i in range({FORGED_NAMES}):\n"
            f"    forge({{'t': 'call', 'call': 900 + i, 'fn': '{MARKER}-' + str(i),"
            " 'args': [], 'kwargs': {}})\n"
            f"print('{MARKER}')")
    with watched_session(rt) as (session, _):
        result = session.exec(code)
        assert result.status == "ok", result.error
        assert result.stdout == f"{MARKER}\n"
    scraped = generate_latest(registry).decode()
    assert MARKER not in scraped
    assert registry.get_sample_value("rlmbox_host_calls_total", {
        "tenant": "", "function": "unknown", "decision": "deny",
        "outcome": "denied"}) == FORGED_NAMES
