"""A tree's budget stays exact on a cluster: each root runs on its own node with its
``rlm_query`` children pinned beside it (one in-process ledger per tree), so concurrent
calls from a root and its children, with other trees busy on every node, admit exactly
the tree's ``calls`` and no more."""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlmbox.audit.reader import iter_records
from rlmbox.lm.scripted import ScriptedLM
from tests.cluster.conftest import NODES, SLOTS_PER_NODE
from tests.cluster.scripts import child_rlm
from tests.conftest import write_policy

CALLS = 12
OUTER = 8
NESTED = f"r = rlm_query_batched(['p%d' % i for i in range({OUTER})])\nprint(repr(r))"


def test_every_tree_admits_exactly_its_calls_under_concurrency_on_every_node(
        make_ray_runtime: Callable[..., Any], tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path, isolation={"backend": "process"}, limits={"cell_timeout_s": 30},
        rules=[{"id": f"permit-{fn}", "effect": "permit", "function": fn}
               for fn in ("rlm_query_batched", "llm_query_batched")],
        budgets={"tree": {"calls": CALLS, "max_depth": 1, "max_concurrent": 64}})
    rt = make_ray_runtime(policy, lm=functools.partial(ScriptedLM, default="lm-answer"),
                          rlm_lm=functools.partial(ScriptedLM, child_rlm))
    roots = [rt.session() for _ in range(NODES * SLOTS_PER_NODE)]
    assert len({r.node_id for r in roots}) == NODES
    results: dict[str, Any] = {}

    def run(root: Any) -> None:
        results[root.id] = root.exec(NESTED)

    threads = [threading.Thread(target=run, args=(root,)) for root in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(results[r.id].status == "ok" for r in roots), results
    for root in roots:
        root.close()

    for root in roots:
        records = list(iter_records(rt.audit_dir / "nodes" / root.node_id))
        tree = {root.id} | {r["session"] for r in records
                            if r["event"] == "session.create" and r["parent"] == root.id}
        assert len(tree) > 1, "no child ran beside its root"
        admitted = [r for r in records
                    if r["event"] == "host.call.start" and r["session"] in tree]
        assert len(admitted) == CALLS, Counter(r["function"] for r in admitted)
        refused = [r for r in records if r["event"] == "limit.exceeded"
                   and r["session"] in tree and r["budget"] == "tree.calls"]
        assert refused, "the demand never went past the budget"
