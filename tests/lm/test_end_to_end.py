"""A real provider behind a real runtime: process sandbox, audit log, and the CLI.

The provider talks HTTP to the local test double of Anthropic's API (fake_api.py); the
sandbox runs in the real process jail. The API key lives in the host's environment and
in the provider; it must appear nowhere in the audit directory nor inside the sandbox.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from rlmbox.audit.reader import iter_records
from rlmbox.lm.anthropic import AnthropicLM
from rlmbox.runtime.runtime import Runtime

from .conftest import FAST_RETRY
from .fake_api import FakeLMServer, sent_key

MODEL = "claude-haiku-4-5"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def key() -> str:
    """A key of no well-known shape (a gateway's, say): the audit log's built-in
    credential patterns miss it, so only its registration keeps it out."""
    return f"gw-{secrets.token_hex(20)}"


def _files_holding(directory: Path, needle: str) -> list[Path]:
    return [p for p in directory.rglob("*")
            if p.is_file() and needle.encode() in p.read_bytes()]


def test_llm_query_in_a_sandbox_goes_through_the_provider(
        api: FakeLMServer, key: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox gets the server's text; the audit log has the tokens and cost; the key
    is in no audit file and not in the sandbox's environment, even when the server
    echoes it back and when model code holds it."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)   # the host has it; the sandbox must not
    api.answer = lambda prompt: f"echo {prompt} with key {key}"
    lm = AnthropicLM(MODEL, base_url=api.url, retry=FAST_RETRY)
    audit_dir = tmp_path / "audit"
    # No register_secrets call here: the runtime registers its provider's key itself.
    with Runtime(policy="default", lm=lm, audit_dir=audit_dir, pool_size=0) as rt, \
            rt.session() as session:
        reply = session.exec("print(llm_query('hi'))")
        inside = session.exec(
            "import os\n"
            "env = '\\n'.join('%s=%s' % kv for kv in os.environ.items())\n"
            "raw = open('/proc/self/environ', 'rb').read().decode(errors='replace')\n"
            "print(env)\nprint(raw)\n")
        # a key that reached model code by some other road is still not audited
        planted = session.exec(f"leaked = {key[:8]!r} + {key[8:]!r}\nprint(leaked)")
    assert reply.status == "ok", reply.error
    assert reply.stdout == "echo hi with key [redacted]\n"
    assert inside.status == "ok", inside.error
    assert key not in inside.stdout
    assert "ANTHROPIC_API_KEY" not in inside.stdout
    assert planted.stdout == key + "\n"   # the control: model code can print it ...
    assert _files_holding(audit_dir, key) == []   # ... the audit log never holds it
    [call] = [r for r in iter_records(audit_dir)
              if r.get("event") == "host.call" and r.get("function") == "llm_query"]
    completion_len = len("echo hi with key ") + len(key)   # the server counts the raw text
    assert call["outcome"] == "ok"
    assert call["tokens_in"] == 2
    assert call["tokens_out"] == completion_len
    assert call["cost_usd"] == pytest.approx((2 * 1.0 + completion_len * 5.0) / 1e6)
    assert call["model"] == MODEL
    assert sent_key(api.seen[0].headers) == key


def test_rlmbox_run_with_an_anthropic_root_model(api: FakeLMServer, key: str,
                                                 tmp_path: Path) -> None:
    """``rlmbox run --root-lm anthropic:MODEL --lm anthropic:MODEL`` against the test
    double (base URL from $RLMBOX_ANTHROPIC_BASE_URL) finishes the task."""
    def answer(prompt: str) -> str:
        if prompt.startswith("You are a Recursive Language Model"):
            return ("I will ask a sub-model.\n```repl\n"
                    "FINAL(llm_query('Reply with the code only: ' + context[-60:]))\n```")
        match = re.search(r"the secret code is (\d+)", prompt)
        return match.group(1) if match else "NONE"

    api.answer = answer
    context = tmp_path / "doc.txt"
    context.write_text("filler line\n" * 200 + "the secret code is 7341.\n")
    audit_dir = tmp_path / "audit"
    env = {**os.environ, "ANTHROPIC_API_KEY": key, "RLMBOX_ANTHROPIC_BASE_URL": api.url,
           "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "rlmbox.cli.main", "run", "What is the code?",
         "--context", str(context), "--root-lm", f"anthropic:{MODEL}",
         "--lm", f"anthropic:{MODEL}", "--audit-dir", str(audit_dir)],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answer: 7341" in done.stdout
    assert "step 1 · root model\nI will ask a sub-model." in done.stdout   # streamed
    assert api.seen[1].body["stream"] is True   # the root turn; the sub-call is not
    assert "stream" not in api.seen[2].body
    assert key not in done.stdout + done.stderr
    assert _files_holding(audit_dir, key) == []
    # the default policy has an input-token budget: the root turn is counted first
    assert [seen.path for seen in api.seen] == [
        "/v1/messages/count_tokens", "/v1/messages", "/v1/messages"]
    assert api.problems == []
    calls = [r for r in iter_records(audit_dir) if r.get("event") == "host.call"]
    assert [c["function"] for c in calls] == ["root_lm", "llm_query"]
    root_turn, sub_call = calls
    assert sub_call["tokens_out"] == 4
    assert root_turn["counted_input_tokens"] == root_turn["tokens_in"]   # double: exact


def test_rlmbox_run_refuses_an_unpriced_model(api: FakeLMServer, key: str,
                                              tmp_path: Path) -> None:
    context = tmp_path / "doc.txt"
    context.write_text("x")
    env = {**os.environ, "ANTHROPIC_API_KEY": key, "RLMBOX_ANTHROPIC_BASE_URL": api.url,
           "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "rlmbox.cli.main", "run", "t", "--context", str(context),
         "--root-lm", "anthropic:claude-future-1", "--audit-dir", str(tmp_path / "a")],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2
    assert "no price is known for model 'claude-future-1'" in done.stderr
    assert api.seen == []
    assert json.dumps(done.stderr).count(key) == 0
