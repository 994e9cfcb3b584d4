"""A real run for the viewer tests: a Runtime session over the process jail, driven by
scripted models, with an LM call, a denied call, an ``rlm_query`` child, a cell that prints
markup meant to run in the viewer, and a cell stopped at its wall-time limit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.model import load_policy
from rlmbox.runtime.runtime import Runtime

#: What the hostile cell prints: each piece would run or restyle the page if not escaped.
MARKUP = ('<script>document.title="pwned";window.pwned=1</script>'
          '<img src=x onerror="window.pwned=2"><b id="injected">bold</b>'
          "</pre></details></section><script>window.pwned=3</script>")
HOSTILE_CELL = (f"import sys\nprint({MARKUP!r})\nprint({MARKUP!r}, file=sys.stderr)\n"
                f"raise ValueError({MARKUP!r})")
DENIED_RULE = "forbid-big-model"


@dataclass(frozen=True)
class RealRun:
    """Where the log is and which sessions it holds."""

    audit_dir: Path
    root: str
    child: str


def _policy(directory: Path) -> Path:
    doc = load_policy("default").model_dump(mode="json")
    doc["name"] = "viewer-test"
    doc["limits"] = {**doc["limits"], "memory_mb": 256, "pids": 64, "cell_timeout_s": 2,
                     "interrupt_grace_s": 1, "disk_mb": 32}
    doc["rules"] = [
        {"id": "permit-llm", "effect": "permit", "function": "llm_query"},
        {"id": "permit-rlm", "effect": "permit", "function": "rlm_query"},
        {"id": DENIED_RULE, "effect": "forbid", "function": "llm_query",
         "when": {"model": {"in": ["big"]}}},
    ]
    path = directory / "policy.yaml"
    path.write_text(json.dumps(doc))   # JSON is YAML
    return path


def _child_root_model(prompt: str) -> str:
    return "```repl\nsummary = llm_query('summarise ' + context[:20])\nFINAL(summary)\n```"


def record_real_run(directory: Path) -> RealRun:
    """Runs the session and closes the runtime, so the log is sealed."""
    rt = Runtime(_policy(directory), lm=ScriptedLM(default="an answer"),
                 audit_dir=directory / "audit", pool_size=0)
    try:
        rt.rlm_lm = ScriptedLM(_child_root_model)
        with rt.session() as session:
            root = session.id
            session.exec("print(llm_query('hello'))")
            session.exec("llm_query('x', model='big')")
            session.exec("print(rlm_query('part one of the input'))")
            session.exec(HOSTILE_CELL)
            session.exec("import time\ntime.sleep(30)")
    finally:
        rt.close()
    created = [json.loads(line) for line in (directory / "audit" / "audit.jsonl")
               .read_text().splitlines()]
    children = [r["session"] for r in created
                if r["event"] == "session.create" and r["parent"] == root]
    return RealRun(directory / "audit", root, children[0])
