"""Review s4b: attacks on what changed this round (the cluster's audit set, tools added to
a running session, counting before ``llm_query`` sub-calls).

Each test performs the attack and asserts the promise the docs make; those that failed were
strict xfails until their fixes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from rlmbox.audit.anchor import anchor_line
from rlmbox.audit.canonical import record_digest
from rlmbox.audit.files import CHECKPOINTS
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import PolicyError
from rlmbox.lm.base import Completion, LMRequest, TextSink
from rlmbox.lm.scripted import ScriptedLM
from rlmbox.runtime.runtime import Runtime
from tests.audit.tamper_helpers import encode, read, record, write
from tests.conftest import write_policy

REPO = Path(__file__).resolve().parents[2]
NODE_IDS = ("a" * 56, "b" * 56)


# --- the cluster's collected audit set ------------------------------------------------------

def _collected_set(root: Path) -> None:
    """What a finished two-node cluster run leaves (``audit-format.md``'s index events):
    two node logs and the driver's index naming them and anchoring their final heads."""
    heads = {}
    for node in NODE_IDS:
        with AuditLog(root / "nodes" / node) as log:
            for i in range(3):
                log.append("code.exec", session=f"s-{node[:4]}", cell=str(i))
            heads[node] = log.synced_head()
    with AuditLog(root / "index") as index:
        for node in NODE_IDS:
            index.append("cluster.node", node=node, log=f"nodes/{node}")
            index.append("session.place", session=f"s-{node[:4]}", node=node,
                         sandbox_id="x", backend="process")
        for node in NODE_IDS:
            seq, head = heads[node]
            index.append("cluster.anchor", node=node, log=f"nodes/{node}",
                         anchored_seq=seq, anchored_head=head)


def _erase_node_b(root: Path) -> None:
    """The forger's edit: node B's log is gone and so is every index record naming it; the
    index is relinked and re-signed with a key of the forger's own (as anyone who can write
    the driver's audit directory can)."""
    shutil.rmtree(root / "nodes" / NODE_IDS[1])
    index = root / "index"
    kept = [line for line in read(index) if NODE_IDS[1].encode() not in line]
    relinked: list[bytes] = []
    for line in kept:
        obj = record(line)
        obj["seq"] = len(relinked) + 1
        obj["prev"] = record_digest(relinked[-1]) if relinked else obj["prev"]
        relinked.append(encode(obj))
    write(index, relinked)
    for name in (CHECKPOINTS, "audit.key", "audit.pub"):
        (index / name).unlink(missing_ok=True)
    AuditLog(index).close()   # a fresh key; closing writes a checkpoint signed with it


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rlmbox.cli.main", "audit", *args],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_verify_cluster_checks_the_index_against_its_off_host_anchors(tmp_path: Path) -> None:
    """scale-out.md: the index is 'only as safe as an `rlmbox audit anchor` of it kept off
    the driver's host'. The anchor is taken; the forger then erases a whole node (its log
    and its index records). The single-log verify sees it by the anchor; so must
    ``verify --cluster`` when given the same anchor file (it accepts the flag)."""
    root = tmp_path / "audit"
    _collected_set(root)
    assert _cli("verify", "--cluster", str(root)).returncode == 0
    anchors = tmp_path / "off-host-anchors"
    anchors.write_text(anchor_line(verify_log(root / "index")) + "\n")

    _erase_node_b(root)
    assert _cli("verify", str(root / "index"), "--anchors", str(anchors)).returncode == 1
    done = _cli("verify", "--cluster", str(root), "--anchors", str(anchors))
    assert done.returncode != 0, done.stdout + done.stderr


def test_verify_cluster_checks_the_pinned_public_key(tmp_path: Path) -> None:
    """audit-format.md promise 12: pinning the key (``--public-key``) is what stands
    against a forger who re-signs a rewritten log. ``verify --cluster`` takes the flag but
    checks each log against the ``audit.pub`` beside it, so the forger's key wins."""
    root = tmp_path / "audit"
    _collected_set(root)
    pinned = tmp_path / "index.pub"
    shutil.copy(root / "index" / "audit.pub", pinned)
    _erase_node_b(root)
    assert _cli("verify", str(root / "index"), "--public-key", str(pinned)).returncode == 1
    done = _cli("verify", "--cluster", str(root), "--public-key", str(pinned))
    assert done.returncode != 0, done.stdout + done.stderr


def test_a_node_log_replaced_by_another_nodes_fails_verify_cluster(tmp_path: Path) -> None:
    """Held: node A's log swapped for node B's (same length, intact chain) misses A's
    anchored head."""
    root = tmp_path / "audit"
    _collected_set(root)
    a, b = (root / "nodes" / node for node in NODE_IDS)
    shutil.rmtree(a)
    shutil.copytree(b, a)
    done = _cli("verify", "--cluster", str(root))
    assert done.returncode == 1
    assert f"FAIL: nodes/{NODE_IDS[0]}" in done.stdout


def test_a_node_log_cut_before_its_anchor_fails_verify_cluster(tmp_path: Path) -> None:
    """Held: a node log truncated (its checkpoints dropped) below the anchored seq."""
    root = tmp_path / "audit"
    _collected_set(root)
    victim = root / "nodes" / NODE_IDS[0]
    write(victim, read(victim)[:-1])
    (victim / CHECKPOINTS).unlink()
    assert verify_log(victim, check_bodies=False).ok, "the chain alone cannot see it"
    assert _cli("verify", "--cluster", str(root)).returncode == 1


# --- tools added to a running session -------------------------------------------------------

@pytest.fixture
def process_runtime(tmp_path: Path) -> Any:
    made: list[Runtime] = []

    def make(lm: Any = None, **sections: Any) -> Runtime:
        policy = write_policy(tmp_path, isolation={"backend": "process"}, **sections)
        rt = Runtime(policy, lm=lm or ScriptedLM(default="lm-answer"),
                     audit_dir=tmp_path / f"audit-{len(made)}", pool_size=0)
        made.append(rt)
        return rt
    yield make
    for rt in made:
        rt.close()


def test_a_tool_never_shadows_a_built_in_name(process_runtime: Any) -> None:
    """policy-reference.md: a tool is decided as ``tool.<name>``, 'so ... a tool can never
    shadow a built-in name'. A tool registered as ``llm_query`` (at start or added later)
    must not turn the sandbox's ``llm_query`` into a call of the tool: either the name is
    refused when registered or the built-in keeps it."""
    ran: list[str] = []

    def impostor(prompt: str = "") -> str:
        ran.append(prompt)
        return "from-the-tool"

    rt = process_runtime()
    outputs = []
    # refusing the name is the other way to keep it
    with contextlib.suppress(PolicyError), rt.session(tools={"llm_query": impostor}) as session:
        outputs.append(session.exec("print(llm_query('hi'))").stdout)
    with rt.session(context="CTX") as session:
        with contextlib.suppress(PolicyError):
            session.add_tools({"llm_query": impostor, "context": impostor,
                               "FINAL": impostor})
        result = session.exec("print(llm_query('hi'), context)\nFINAL('answer')")
    assert ran == []
    assert all(out == "lm-answer\n" for out in outputs)
    assert result.stdout == "lm-answer CTX\n"
    assert result.answer == "answer"


# --- counting before llm_query sub-calls ----------------------------------------------------

class OneTokenPerByteLM:
    """A provider at the bound the host relies on (a token is at least one byte): it counts
    and bills one token per byte. Each completion waits (briefly) until four are in flight,
    so concurrent batch items are deterministically concurrent."""

    name = "bytes"
    model = "bytes-1"

    def __init__(self) -> None:
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self._together = threading.Barrier(4)

    @staticmethod
    def _bytes(request: LMRequest) -> int:
        text = (request.system or "") + "".join(turn.text for turn in request.turns)
        return len(text.encode())

    def complete(self, prompt: str, *, model: str | None = None) -> Completion:
        raise AssertionError("a conversation provider is sent requests")

    def respond(self, request: LMRequest, *, model: str | None = None,
                on_text: TextSink | None = None) -> Completion:
        with self._lock:
            self.sent.append(self._bytes(request))
        with contextlib.suppress(threading.BrokenBarrierError):
            self._together.wait(timeout=1.0)
        return Completion(text="ok", model=self.model, input_tokens=self._bytes(request),
                          output_tokens=1)

    def count_input_tokens(self, request: LMRequest, *,
                           model: str | None = None) -> int | None:
        return self._bytes(request)


def test_concurrent_sub_calls_sent_uncounted_cannot_cross_the_input_budget(
        process_runtime: Any) -> None:
    """lm-providers.md: 'a request whose UTF-8 bytes plus 64 tokens of framing fit in what
    the budgets still allow is sent without a counting request' because it cannot cross
    the budget. Four 600-byte items of one batch each fit a 1000-token headroom, none holds
    anything while in flight, so all four are sent: 2400 input tokens against 1000."""
    lm = OneTokenPerByteLM()
    rt = process_runtime(lm=lm, budgets={"tree": {"calls": 50, "input_tokens": 1000}})
    with rt.session() as session:
        result = session.exec("p = 'x' * 600\nprint(llm_query_batched([p, p, p, p]))")
    assert result.ok, result.error
    assert sum(lm.sent) <= 1000, f"sent {lm.sent}"
