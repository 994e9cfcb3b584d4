"""Fixtures for the frontend adapters: a local OpenAI-compatible LM server and audit readers.

The server is a real HTTP server on 127.0.0.1 speaking the chat-completions wire format, so
rlms' own ``OpenAIClient`` (and its ``LMHandler``) run unmodified against it; a script
decides each reply. Nothing leaves the machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rlmbox.adapters.dspy import RlmboxInterpreter
from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.log import AuditLog
from rlmbox.audit.reader import iter_records

Messages = list[dict[str, Any]]


@dataclass
class FakeOpenAI:
    """A chat-completions endpoint; ``reply(messages)`` scripts the model."""

    reply: Callable[[Messages], str]
    requests: list[Messages] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or []
        with self.lock:
            self.requests.append(messages)
        text = self.reply(messages)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text) // 4 + 1}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                "model": body.get("model", "fake"), "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}]}

    def sub_prompts(self) -> list[str]:
        """Prompts of plain completions (``llm_query``): a single user message, no system."""
        with self.lock:
            return [str(m[0].get("content")) for m in self.requests
                    if len(m) == 1 and m[0].get("role") == "user"]


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            data = json.dumps(fake.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def serve_fake_openai(reply: Callable[[Messages], str]
                      ) -> tuple[FakeOpenAI, ThreadingHTTPServer]:
    """A fake server on 127.0.0.1 with a reply script; the caller shuts it down."""
    fake = FakeOpenAI(reply=reply)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return fake, server


def stop_fake_openai(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_openai() -> Iterator[Callable[[Callable[[Messages], str]], FakeOpenAI]]:
    """Starts fake servers on 127.0.0.1 with a reply script; stops them at teardown."""
    servers: list[ThreadingHTTPServer] = []

    def start(reply: Callable[[Messages], str]) -> FakeOpenAI:
        fake, server = serve_fake_openai(reply)
        servers.append(server)
        return fake

    yield start
    for server in servers:
        stop_fake_openai(server)


def records(audit_dir: Path) -> list[dict[str, Any]]:
    return list(iter_records(audit_dir))


def body(audit_dir: Path, record: dict[str, Any], name: str) -> str:
    """A body kept beside the log by digest (code, prompts, completions)."""
    digest = str(record[f"{name}_sha256"])
    data = BodyStore(audit_dir / "bodies").read(digest)
    assert data is not None, f"body {name} missing"
    return data.decode("utf-8")


@pytest.fixture
def policy_file(tmp_path: Path) -> Callable[..., Path]:
    """A test policy: the default preset with tight limits, tools permitted, and any
    top-level sections replaced."""
    import yaml

    from rlmbox.policies.model import load_policy

    def write(**sections: Any) -> Path:
        base = load_policy("default").model_dump(mode="json")
        base["name"] = "adapters-test"
        base["limits"] = {**base["limits"], "memory_mb": 256, "pids": 64, "cell_timeout_s": 10,
                          "interrupt_grace_s": 1, "cpu_seconds": 120}
        base["rules"] = [*base["rules"], {"id": "permit-tools", "effect": "permit",
                                          "function": "tool.*"}]
        base.update(sections)
        path = tmp_path / f"policy-{len(list(tmp_path.glob('policy-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(base, sort_keys=False))
        return path

    return write


@pytest.fixture
def interpreter(policy_file: Callable[..., Path], tmp_path: Path
                ) -> Iterator[Callable[..., RlmboxInterpreter]]:
    """Makes DSPy interpreters under the test policy, one audit log; shut down after."""
    made: list[RlmboxInterpreter] = []
    log = AuditLog(tmp_path / "audit")

    def make(policy: Path | None = None, **kwargs: Any) -> RlmboxInterpreter:
        interp = RlmboxInterpreter(policy=policy or policy_file(), audit=log, **kwargs)
        made.append(interp)
        return interp

    yield make
    for interp in made:
        interp.shutdown()
    log.close()
