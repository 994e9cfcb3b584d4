"""What ``exec`` and ``run`` print the same way: which policy and backend ran, and answers."""

from __future__ import annotations

import sys
from typing import Any

from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session


def header_line(rt: Runtime, session: Session) -> str:
    """One line naming the policy (by digest) and the sandbox the session runs in."""
    info = session.sandbox.info
    runtime = f" ({info.runtime})" if info.runtime else ""
    return (f"policy {rt.policy.name} (sha256 {rt.policy.sha256[:12]}), backend "
            f"{info.backend}{runtime}, session {session.id} in sandbox {info.sandbox_id}")


def print_header(rt: Runtime, session: Session) -> None:
    print(header_line(rt, session), flush=True)


def result_json(label: str, result: ExecResult) -> dict[str, Any]:
    """One cell's result as ``--json`` prints it (``exec`` and ``client exec`` alike)."""
    return {"cell": label, "status": result.status, "stdout": result.stdout,
            "stderr": result.stderr, "error": result.error, "answer": result.answer,
            "has_answer": result.has_answer, "duration_s": result.duration_s,
            "truncated": result.truncated}


def print_answer(answer: Any) -> None:
    """``answer: X``: a string as it is, anything else as its Python repr."""
    print(f"answer: {answer if isinstance(answer, str) else repr(answer)}", flush=True)


def stream_output(stream: str, text: str) -> None:
    """An ``on_output`` callback: a cell's output to our stdout or stderr as it arrives."""
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.write(text)
    target.flush()


def print_outcome(result: ExecResult) -> None:
    """After a streamed cell: its status, host-measured time and calls, error, answer."""
    print(f"   [{result.status}, {result.duration_s * 1000:.1f} ms, "
          f"{result.host_calls} host call(s)]")
    if result.error:
        print(result.error)
    if result.has_answer:
        print_answer(result.answer)
