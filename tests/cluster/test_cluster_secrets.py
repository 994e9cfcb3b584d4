"""On a cluster the LM key lives in the node actor's provider, as on one machine: an LM
call goes through it, yet the key is nowhere a sandbox can read (environment, files,
memory) and in no audit record of the node or the index."""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.cluster.scripts import KeyedLM
from tests.security.secret_scan import scan_cell, target

PREFIX = "sk-ant-canary-"


def test_the_lm_key_reaches_the_node_provider_but_no_sandbox_and_no_log(
        make_ray_runtime: Callable[..., Any]) -> None:
    key = f"{PREFIX}{secrets.token_hex(16)}"
    control = f"{PREFIX}{secrets.token_hex(16)}"   # planted inside: the scan must find it
    rt = make_ray_runtime(lm=functools.partial(KeyedLM, key))
    with rt.session() as session:
        assert session.exec("print(llm_query('hello'))").stdout == "fine\n"
        assert session.exec(
            f"control = {control[:len(PREFIX)]!r} + {control[len(PREFIX):]!r}").ok
        scan = session.exec(scan_cell([target(key, len(PREFIX)),
                                       target(control, len(PREFIX))], memory=True))
    outcome = json.loads(scan.stdout.strip().splitlines()[-1])
    assert outcome["regions"] > 10, "the memory scan read nothing"
    found = {index for index, _ in outcome["found"]}
    assert 1 in found, "the scan did not find its control: it cannot see memory"
    assert 0 not in found, f"the LM key is visible inside: {outcome['found']}"
    rt.close()
    logged = [path for path in Path(rt.audit_dir).rglob("*")
              if path.is_file() and key.encode() in path.read_bytes()]
    assert not logged, f"the LM key is in {logged}"
