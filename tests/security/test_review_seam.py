"""Review (review-seam): attacks on the host-call seam, budgets and the audit log that
succeed today. Each test performs the attack and asserts the documented promise; it is
marked ``xfail(strict=True)`` until the seam is fixed (then remove the mark).
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from rlmbox.cli.main import main as rlmbox_main
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.policies.engine import CallRequest, PolicyEngine
from rlmbox.policies.model import load_policy

from .harness import Runtimes, audit_records, events, run_json
from .test_call_budgets import TRY_CALLS

ROOT = Path(__file__).resolve().parents[2]


# Gives model code ``forge_call(fn)``: a call frame naming any function (reply ignored).
FORGE_CALL = """
import json, struct, os
_agent = [c.cell_contents for c in llm_query.__closure__
          if type(c.cell_contents).__name__ == 'Agent'][0]
def forge_call(call_id, fn):
    body = json.dumps({'t': 'call', 'call': call_id, 'fn': fn, 'args': [],
                       'kwargs': {}}).encode()
    data = struct.pack('>I', len(body)) + body
    while data:
        data = data[os.write(_agent.io._write_fd, data):]
"""


def _permit_all() -> list[dict[str, Any]]:
    return [{"id": "permit-all", "effect": "permit", "function": "*"}]


def test_a_tool_that_fails_still_spends_its_call_budget(runtimes: Runtimes) -> None:
    """{tool.x: {calls: 2}}, tree calls 5: a tool that acts and then raises (a lookup
    miss, a send that reports an error afterwards) must still run at most twice. Today
    every failing call is refunded, so model code runs it as often as it likes."""
    ran: list[str] = []

    def x(key: str) -> None:
        ran.append(key)   # the side effect happened on the host
        raise ValueError("no such key")

    rt = runtimes(rules=_permit_all(),
                  budgets={"tree": {"calls": 5}, "functions": {"tool.x": {"calls": 2}}})
    with rt.session(tools={"x": x}) as session:
        outcomes = run_json(session, TRY_CALLS.format(n=10, call="x(str(i))"))
    assert len(ran) <= 2, f"the tool ran {len(ran)} times under a budget of 2: {outcomes}"
    assert outcomes.count("BudgetExceeded") >= 8


def test_every_batched_call_is_in_the_audit_log(runtimes: Runtimes) -> None:
    """Every call frame the host decided is its own ``host.call`` (audit-format.md,
    ``host_calls``). A batch that is not a list, has 257 items or none is refused (or
    answered) with no record at all, while ``host_calls`` counts it."""
    rt = runtimes(rules=_permit_all())
    with rt.session() as session:
        result = session.exec(
            "for arg in ['not a list', ['q'] * 257, []]:\n"
            "    try:\n"
            "        llm_query_batched(arg)\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__)\n")
    assert result.status == "ok", result.error
    assert result.stdout == "TypeError\nValueError\n"
    assert result.host_calls == 3
    recorded = {e["call_id"] for e in events(rt, "host.call", function="llm_query_batched")}
    assert recorded == {1, 2, 3}, f"host.call records for call ids {sorted(recorded)} only"


def test_sandbox_text_in_error_attributes_is_bounded(runtimes: Runtimes) -> None:
    """audit-format.md: "sandbox text reaches attributes only through `error`, which is
    bounded". A 3 MB keyword name (an invalid call) and a 3 MB key a tool echoes in its
    KeyError landed whole in one record's ``error``; under ``output_bytes`` 65536."""
    table = {"a": 1}
    rt = runtimes(rules=_permit_all())
    with rt.session(tools={"lookup": lambda key: table[key]}) as session:
        result = session.exec(
            "big = 'Z' * 3_000_000\n"
            "for call in (lambda: llm_query('q', **{big: 1}), lambda: lookup(big)):\n"
            "    try:\n"
            "        call()\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__)\n")
    # the tool's KeyError crosses as its type only (issue 17): its text stays on the host
    assert result.stdout == "TypeError\nHostCallError\n", result.error
    cap = 65536
    sizes = {(r["event"], r.get("outcome")): len(r["error"]) for r in audit_records(rt)
             if r.get("event") == "host.call" and isinstance(r.get("error"), str)}
    assert sizes
    assert all(size <= cap for size in sizes.values()), sizes


def test_audit_stats_never_writes_control_characters(runtimes: Runtimes,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A forged call to an unknown function is recorded under the name the sandbox chose
    (first 128 characters). ``audit show`` escapes it (promise 11); ``audit stats``
    prints it raw, so ESC sequences can erase or rewrite rows on the operator's terminal."""
    rt = runtimes()
    with rt.session() as session:
        result = session.exec(FORGE_CALL + "forge_call(900, '\\x1b[2K\\x1b[1A\\x1b[2Kx')\n"
                              "print('sent')")
        assert result.stdout == "sent\n"
    assert events(rt, "host.call", function="\x1b[2K\x1b[1A\x1b[2Kx")
    assert rt.audit_path is not None
    capsys.readouterr()
    assert rlmbox_main(["audit", "stats", str(rt.audit_path.parent)]) == 0
    out = capsys.readouterr().out
    bad = sorted({repr(c) for c in out
                  if c != "\n" and unicodedata.category(c) in ("Cc", "Cf")})
    assert not bad, f"stats wrote control characters to the terminal: {bad}"


def _documented_example_engine(tmp_path: Path) -> PolicyEngine:
    text = (ROOT / "docs" / "policy-reference.md").read_text()
    yaml_text = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(yaml_text)
    return PolicyEngine(load_policy(path))


def test_the_documented_no_secrets_forbid_stops_a_real_private_key(tmp_path: Path) -> None:
    """docs/policy-reference.md's example forbids ``.*BEGIN PRIVATE KEY.*`` on every
    function's ``prompt``. A PEM key always spans lines; ``.`` does not match a newline,
    and ``regex`` is a full match, so the forbid never fires on a real key."""
    engine = _documented_example_engine(tmp_path)
    single = engine.decide(CallRequest("llm_query", {"prompt": "BEGIN PRIVATE KEY",
                                                     "model": "small"}))
    assert single.rule_ids == ("no-secrets",)   # the rule works on one line
    pem = ("summarise this:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
           "-----END PRIVATE KEY-----\n")
    decision = engine.decide(CallRequest("llm_query", {"prompt": pem, "model": "small"}))
    assert decision.effect == "deny", decision


FORBID_BIG_MODEL = [
    {"id": "permit-lm", "effect": "permit", "function": "*_query"},
    {"id": "no-big-model", "effect": "forbid", "function": "*_query",
     "when": {"model": "big-model"}},
]


def test_an_empty_model_name_does_not_dodge_a_forbid_on_the_default(runtimes: Runtimes
                                                                    ) -> None:
    """Promises 49/50: a forbid on the default model is not dodged. ``None`` is bound to
    the default before the decision, but ``""`` is decided as ``""`` and then run as the
    default (``model or self.model`` in the scripted, Anthropic and OpenAI providers and
    in ``run_rlm``): the forbidden model answers both llm_query and rlm_query's child."""
    lm = ScriptedLM(default="FINAL(done)", model="big-model")
    rt = runtimes(lm=lm, rules=FORBID_BIG_MODEL,
                  budgets={"tree": {"calls": 50, "max_depth": 1}})
    with rt.session() as session:
        outcomes = run_json(session, TRY_CALLS.format(
            n=1, call="llm_query('hi', model=''); rlm_query('x', model='')"))
    ran = [e["model"] for e in events(rt, "host.call", outcome="ok") if "model" in e]
    assert lm.prompts == [], f"the forbidden default answered: {ran} ({outcomes})"
