"""What a node actor runs: one local ``Runtime`` per node, holding the node's sessions.

The actor is this class wrapped by ``ray.remote`` (``cluster/actors.py``), pinned to its
node. Everything that makes a session safe happens here, on the node, exactly as in an
embedded ``Runtime``: the jail, the warm pool, the policy, the ledger of each session tree
(an ``rlm_query`` child runs on its root's node, so the tree's ledger is one in-process
``Ledger``) and the node's own hash-chained audit log. The driver only forwards calls.

No sandbox outlives this process: the process backend's jails die with it
(``--die-with-parent``), its Docker containers are killed by its sandbox reaper once it is
dead (``cluster/sandbox_reaper.py``), and the actor dies with its driver (Ray's ownership).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rlmbox.audit.log import AuditLog
from rlmbox.cluster.cell_channel import CURRENT_CELL, CellChannel
from rlmbox.cluster.cell_wire import CallEvent, DriverAnswer, OutputEvent
from rlmbox.cluster.driver_functions import (
    DriverGate,
    DriverLM,
    DriverLMSpec,
    driver_subcall,
    driver_tool,
)
from rlmbox.cluster.sandbox_reaper import SandboxReaper
from rlmbox.errors import SessionClosed
from rlmbox.lm.base import LMProvider
from rlmbox.lm.spec import provider_from_spec
from rlmbox.policies.model import Policy
from rlmbox.runtime.results import ExecResult
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.session import Session
from rlmbox.runtime.session_files import FileEntry
from rlmbox.sandboxes.docker import wait_for_removals
from rlmbox.sandboxes.owner import Owner

#: How a node gets its LM provider: a spec (``anthropic:MODEL``; the key is read from the
#: node's own environment, so it never travels through Ray), a picklable factory run on
#: the node, or a :class:`DriverLMSpec` (the provider stays on the driver, which makes
#: each completion). A provider object itself does not travel (it holds locks and HTTP
#: clients).
LMSource = str | Callable[[], LMProvider]

#: Driver tools by name, as the node binds them: their portable signatures.
ToolSignatures = Mapping[str, inspect.Signature]


def build_provider(source: LMSource | DriverLMSpec | None) -> LMProvider | None:
    """The provider ``source`` names, built here on the node."""
    if source is None:
        return None
    if isinstance(source, DriverLMSpec):
        return DriverLM(source)
    return provider_from_spec(source) if isinstance(source, str) else source()


@dataclass(frozen=True)
class Placement:
    """Where a session landed: its node and its sandbox (the sandbox id names the jail's
    cgroup, so an operator can find its processes)."""

    session_id: str
    node_id: str
    backend: str
    sandbox_id: str


@dataclass(frozen=True)
class NodeHead:
    """A node log's head: its record ``seq`` had digest ``head``."""

    node_id: str
    seq: int
    head: str


class NodeHost:
    """The node's ``Runtime`` and its open sessions, addressed by session id."""

    def __init__(self, node_id: str, policy: str | Path | Policy, audit_dir: str,
                 lm: LMSource | DriverLMSpec | None, rlm_lm: LMSource | None, pool_size: int,
                 tenant: str | None, durability: Literal["cell", "session"],
                 driver_subcall_on: bool, driver_gate_on: bool = False) -> None:
        self.node_id = node_id
        # first, before any sandbox (a warm pool's) exists: it is keyed by this process,
        # the owner every sandbox of this runtime is labelled with
        self._reaper = SandboxReaper(Owner.current().id)
        self._log = AuditLog(Path(audit_dir))
        self._runtime = Runtime(policy, lm=build_provider(lm), rlm_lm=build_provider(rlm_lm),
                                audit=self._log, pool_size=pool_size, tenant=tenant,
                                durability=durability,
                                subcall=driver_subcall if driver_subcall_on else None,
                                session_gate=DriverGate() if driver_gate_on else None)
        self._sessions: dict[str, Session] = {}
        # the driver's cell token -> its session and channel, kept past the cell's end
        # while a call of it still waits for the driver (its late answer is its outcome)
        self._cells: dict[str, tuple[str, CellChannel]] = {}
        self._cells_lock = threading.Lock()

    def ready(self) -> str:
        """The node id, once the runtime is up (the driver waits on it)."""
        return self.node_id

    def open(self, context: Any, tools: ToolSignatures, backend: str | None) -> Placement:
        """Starts a session whose tools run on the driver (``tools``: their signatures)."""
        session = self._runtime.session(context=context, tools=self._driver_tools(tools),
                                        backend=backend)
        self._sessions[session.id] = session
        info = session.sandbox.info
        return Placement(session.id, self.node_id, info.backend, info.sandbox_id)

    def add_tools(self, session_id: str, tools: ToolSignatures) -> None:
        self._session(session_id).add_tools(self._driver_tools(tools))

    def exec(self, session_id: str, cell: str, code: str,
             timeout: float | None) -> Iterator[OutputEvent | CallEvent | ExecResult]:
        """Runs one cell, streaming its output and its calls to the driver as they come,
        then its result (a Ray streaming generator: ``num_returns="streaming"``). ``cell``
        is the driver's name for it, which its answers carry."""
        session = self._session(session_id)
        session.check_timeout(timeout)
        channel = CellChannel()

        def run() -> None:
            CURRENT_CELL.set(channel)
            try:
                result = session.exec(code, timeout=timeout, on_output=channel.output)
            except BaseException as exc:   # handed to the driver by the stream
                channel.end(None, exc)
            else:
                channel.end(result, None)

        with self._cells_lock:
            self._cells[cell] = (session_id, channel)
        try:
            threading.Thread(target=contextvars.copy_context().run, args=(run,),
                             name=f"rlmbox-cell-{session_id}", daemon=True).start()
            yield from channel.events()
        finally:
            self._forget_finished_cells()

    def answer(self, cell: str, call_id: int, answer: DriverAnswer) -> bool:
        """The driver's answer to a call of a cell, while it runs or after it ended (an
        abandoned call's late outcome); False when the call no longer waits (its session
        closed)."""
        with self._cells_lock:
            entry = self._cells.get(cell)
        delivered = entry is not None and entry[1].answer(call_id, answer)
        self._forget_finished_cells()
        return delivered

    def write_file(self, session_id: str, path: str, data: bytes | str) -> None:
        self._session(session_id).write_file(path, data)

    def read_file(self, session_id: str, path: str) -> bytes:
        return self._session(session_id).read_file(path)

    def list_files(self, session_id: str, path: str) -> list[FileEntry]:
        return self._session(session_id).list_files(path)

    def interrupt(self, session_id: str) -> bool:
        return self._session(session_id).interrupt(by="cluster driver")

    def close_session(self, session_id: str, reason: str) -> None:
        """Closes the session; its calls still waiting for the driver are released."""
        self._close_cells(lambda owner: owner == session_id)
        session = self._sessions.pop(session_id, None)
        if session is not None:
            session.close(reason)

    def head(self) -> NodeHead:
        """The head of this node's audit log, once durable (what the cluster anchors)."""
        seq, head = self._log.synced_head()
        return NodeHead(self.node_id, seq, head)

    def log_bytes(self) -> int:
        """Bytes of this node's audit log on disk, bodies included (what the daemon's
        per-tenant audit quota counts of a cluster session)."""
        total = 0
        for path in self._log.directory.rglob("*"):
            with contextlib.suppress(OSError):   # a segment rotated away meanwhile
                total += path.stat().st_size if path.is_file() else 0
        return total

    def shutdown(self) -> NodeHead:
        """Closes every session and the runtime, then the log; returns its final head."""
        self._close_cells(lambda owner: True)
        self._runtime.close()
        # the engine removals those closes queued run on a background thread: the reaper
        # is told "closed" only once they are done (a kill after this return loses them)
        wait_for_removals()
        self._reaper.release()
        final = self.head()
        self._log.close()
        return final

    def _driver_tools(self, tools: ToolSignatures) -> dict[str, Callable[..., Any]]:
        return {name: driver_tool(name, signature) for name, signature in tools.items()}

    def _forget_finished_cells(self) -> None:
        """Drops the channels of cells that ended and wait for no answer."""
        with self._cells_lock:
            for cell in [cell for cell, (_, channel) in self._cells.items()
                         if channel.finished]:
                del self._cells[cell]

    def _close_cells(self, of_session: Callable[[str], bool]) -> None:
        """Closes (and drops) the channels of the sessions ``of_session`` picks."""
        with self._cells_lock:
            closing = [(cell, channel) for cell, (owner, channel) in self._cells.items()
                       if of_session(owner)]
            for cell, _ in closing:
                del self._cells[cell]
        for _, channel in closing:
            channel.close()

    def _session(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionClosed(f"session {session_id} is not open on node {self.node_id}")
        return session
