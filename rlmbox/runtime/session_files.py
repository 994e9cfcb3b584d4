"""Files in and out of a session's writable area, decided, capped, audited, chunked.

The caller (not model code) moves files: ``files.write``, ``files.read`` and ``files.list``
are decided by the session's policy like host calls, and each attempt is one
``file.transfer`` audit record (path, size, decision, outcome, the content by digest).
The path is checked here first (absolute, normalised, inside a writable directory of the
sandbox) and resolved again by the agent inside the sandbox, which refuses symlinks that
leave the area; the host never opens a path of its own. Data travels in chunks well under
the frame cap, and every answer the sandbox gives (bytes, sizes, listings) is hostile
input: bounded by ``limits.file_transfer_mb`` and checked field by field.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import posixpath
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypedDict

from rlmbox.errors import (
    FileTransferRefused,
    PolicyDenied,
    ProtocolError,
    SandboxCrashed,
    SessionClosed,
)
from rlmbox.policies.engine import Decision
from rlmbox.policies.model import Policy
from rlmbox.runtime.dispatch import CallDispatcher
from rlmbox.sandboxes.base import Sandbox
from rlmbox.sandboxes.protocol import Frame

CHUNK_BYTES = 4 * 1024 * 1024       # base64 makes it 5.6 MiB: under the 8 MiB frame cap
CHUNK_TIMEOUT_S = 60.0              # an agent that cannot move 4 MiB in this is stuck
WHOLE_TRANSFER_CHUNKS = 2           # a whole transfer ends within this many chunk timeouts
SLOWEST_TRANSFER_BYTES_PER_S = 1024 * 1024   # ... plus its size at this rate
SHORT_READS_ALLOWED = 16            # rounds past full chunks (a FIFO or /proc file reads short)
MAX_PATH_CHARS = 4096
SHOWN_PATH_CHARS = 200              # of a path, in an error message
MAX_NAME_CHARS = 255
MAX_ENTRIES = 10_000                # the agent stops there too
KINDS = frozenset({"file", "dir", "symlink", "other"})
MiB = 1024 * 1024


class FileEntry(TypedDict):
    """One entry of a listing: ``kind`` is ``file``, ``dir``, ``symlink`` or ``other``."""

    name: str
    size: int
    kind: str


Event = Callable[..., None]


class SessionFiles:
    """The file operations of one session; the session serialises them with its cells."""

    def __init__(self, *, sandbox: Sandbox, policy: Policy, dispatcher: CallDispatcher,
                 event: Event, kill: Callable[[str], None]) -> None:
        self._sandbox = sandbox
        self._dispatcher = dispatcher
        self._event = event
        self._kill = kill
        self._cap = policy.limits.file_transfer_mb * MiB
        self._areas = [p.rstrip("/") for p in sandbox.writable_paths()
                       if p != "/dev" and not p.startswith("/dev/")]
        # the record of the transfer in flight, written once: by the transfer, or by the
        # session's close before its end (review s15b: a write the close cut left none)
        self._open: dict[str, Any] | None = None
        self._open_lock = threading.Lock()
        self._closed = False

    # --- operations -----------------------------------------------------------------

    def write(self, path: str, data: bytes | str) -> None:
        with self._settled():
            self._write(path, data)

    def read(self, path: str) -> bytes:
        with self._settled():
            return self._read(path)

    def list_dir(self, path: str) -> list[FileEntry]:
        with self._settled():
            return self._list_dir(path)

    def _write(self, path: str, given: bytes | str) -> None:
        if isinstance(given, str):
            given = given.encode("utf-8")
        usable = isinstance(given, bytes | bytearray | memoryview)
        data = bytes(given) if usable else b""
        record: dict[str, Any] = {"function": "files.write", "path": _recorded_path(path),
                                  "size": len(data)}
        self._admit(record, path, directory=False, args={"path": path, "size": len(data)})
        if not usable:   # refused with its record, as a bad path is (review s15d)
            self._refuse(record, f"data must be bytes or str, not {type(given).__name__}")
        if len(data) > self._cap:
            self._refuse(record, f"{len(data)} bytes is over limits.file_transfer_mb "
                                 f"({self._cap // MiB} MiB)")
        offset = 0
        until = _whole_transfer_deadline(len(data))
        while True:
            chunk = data[offset:offset + CHUNK_BYTES]
            self._ask(record, {"op": "write", "path": path, "offset": offset,
                               "data": base64.b64encode(chunk).decode("ascii")}, until)
            offset += len(chunk)
            if offset >= len(data):
                break
        self._record(record, outcome="ok", bodies={"content": data})

    def _read(self, path: str) -> bytes:
        record: dict[str, Any] = {"function": "files.read", "path": _recorded_path(path)}
        self._admit(record, path, directory=False, args={"path": path})
        got = bytearray()
        rounds = 0
        until = _whole_transfer_deadline(self._cap)
        while True:
            answer = self._ask(record, {"op": "read", "path": path, "offset": len(got),
                                        "limit": CHUNK_BYTES}, until)
            size, chunk = self._read_answer(record, answer)
            if size > self._cap or len(got) + len(chunk) > self._cap:
                self._refuse(record, f"the file ({size} bytes) is over "
                                     f"limits.file_transfer_mb ({self._cap // MiB} MiB)")
            rounds += 1
            if rounds > size // CHUNK_BYTES + SHORT_READS_ALLOWED:
                # full chunks need size // CHUNK_BYTES + 1 rounds; a sandbox trickling a
                # byte a round would hold the caller for hours (review s14a)
                self._refuse(record, f"the sandbox sent {len(got) + len(chunk)} of {size} "
                                     f"bytes in {rounds} pieces, far more than the file needs")
            got += chunk
            if not chunk or len(got) >= size:
                break
        data = bytes(got)
        self._record(record, size=len(data), outcome="ok", bodies={"content": data})
        return data

    def _list_dir(self, path: str) -> list[FileEntry]:
        record: dict[str, Any] = {"function": "files.list", "path": _recorded_path(path)}
        self._admit(record, path, directory=True, args={"path": path})
        answer = self._ask(record, {"op": "list", "path": path})
        entries, truncated = self._list_answer(record, answer)
        self._record(record, size=len(entries), truncated=truncated, outcome="ok",
                     bodies={"listing": json.dumps(entries, sort_keys=True)})
        return entries

    # --- checks ---------------------------------------------------------------------

    def _admit(self, record: dict[str, Any], path: object, *, directory: bool,
               args: dict[str, Any]) -> None:
        """The path's shape, then the policy; each refusal audited and raised."""
        with self._open_lock:
            if self._closed:
                raise SessionClosed("the session was closed before the file transfer began")
            self._open = record
        problem = self._path_problem(path, directory=directory)
        if problem is not None:
            self._refuse(record, problem, path)   # the record's copy is cut at the cap
        decision = self._dispatcher.decide_action(record["function"], args)
        record.update(decision=decision.effect, rule_ids=list(decision.rule_ids))
        if not decision.allowed:
            self._deny(record, decision)

    def _path_problem(self, path: object, *, directory: bool) -> str | None:
        if not isinstance(path, str) or not path or len(path) > MAX_PATH_CHARS or "\0" in path:
            return "the path must be a non-empty string without NUL, at most 4096 characters"
        if not path.startswith("/") or path.startswith("//") or posixpath.normpath(path) != path:
            return "the path must be absolute and normalised (no '..', '.', '//')"
        for area in self._areas:
            if path.startswith(area + "/") or (directory and path == area):
                return None
        return f"it is outside the sandbox's writable area ({', '.join(self._areas)})"

    def _refuse(self, record: dict[str, Any], reason: str,
                path: object = None) -> NoReturn:
        self._record(record, outcome="refused", reason=reason)
        shown = _shown(record["path"] if path is None else path)
        raise FileTransferRefused(f"{record['function']} {shown}: {reason}")

    def _deny(self, record: dict[str, Any], decision: Decision) -> NoReturn:
        self._record(record, outcome="denied", reason=decision.reason)
        rules = ", ".join(decision.rule_ids) or "default deny"
        raise PolicyDenied(f"policy denied {record['function']}: {decision.reason} ({rules})",
                           decision.rule_ids)

    @contextlib.contextmanager
    def _settled(self) -> Iterator[None]:
        """A transfer that ends without its record (an error of rlmbox's own, the audit
        log failing) leaves none open; one the close cut keeps it, for the close."""
        try:
            yield
        except SessionClosed:
            raise
        except BaseException:
            with self._open_lock:
                self._open = None
            raise

    def cut_by_close(self, write: Event) -> None:
        """The session is closing: the transfer in flight, if any, is recorded as cut (with
        ``write``, the session's own, before its end) and no transfer begins after."""
        with self._open_lock:
            self._closed = True
            record, self._open = self._open, None
            if record is not None:
                write("file.transfer", **record, outcome="error",
                      reason="the session was closed during the transfer")

    def _record(self, record: dict[str, Any], **outcome: Any) -> None:
        """Writes the transfer's one ``file.transfer`` record, unless the close did.

        Raises:
            SessionClosed: the session closed first (its close writes the record).
        """
        with self._open_lock:
            if self._open is record:
                try:
                    self._event("file.transfer", **record, **outcome)
                except SessionClosed:
                    pass   # closed as it was written: the close records it
                else:
                    self._open = None
                    return
        raise SessionClosed("the session was closed during the file transfer")

    # --- the agent's answers ----------------------------------------------------------

    def _ask(self, record: dict[str, Any], request: dict[str, Any],
             whole_until: float | None = None) -> Any:
        """Sends one ``file`` frame and returns the agent's answer, within one chunk's
        timeout and by ``whole_until`` (the transfer's); a refusal by the sandbox is
        audited and raised, a sandbox that breaks the protocol or stalls is killed (its
        frame stream can no longer be trusted)."""
        frame_id = f"file-{secrets.token_hex(8)}"
        frame: Frame = {"t": "file", "id": frame_id, "roots": self._areas, **request}
        until = time.monotonic() + CHUNK_TIMEOUT_S
        if whole_until is not None:
            until = min(until, whole_until)
        try:
            self._sandbox.send(frame, max(0.0, until - time.monotonic()))
            reply = self._await(frame_id, until)
        except (SandboxCrashed, ProtocolError) as exc:
            self._kill(f"during a file transfer: {exc}")
            self._record(record, outcome="error", reason=str(exc)[:500])
            raise FileTransferRefused(f"{record['function']} {_shown(record['path'])}: the "
                                      f"sandbox failed ({exc}); the session is dead") from exc
        if reply["status"] != "ok":
            self._refuse(record, f"the sandbox refused: {str(reply.get('error'))[:500]}")
        return reply.get("answer")

    def _await(self, frame_id: str, until: float) -> Frame:
        """The result for ``frame_id``; anything else the sandbox sends meanwhile (stray
        output, a background thread's call) is dropped, as between cells."""
        while True:
            reply = self._sandbox.recv(max(0.0, until - time.monotonic()))
            if reply is None:
                raise SandboxCrashed(f"the sandbox did not answer a file transfer in time "
                                     f"({CHUNK_TIMEOUT_S:g} s a chunk, "
                                     f"{WHOLE_TRANSFER_CHUNKS * CHUNK_TIMEOUT_S:g} s in all "
                                     f"plus 1 s a MiB)")
            if reply["t"] == "result" and reply["id"] == frame_id:
                return reply

    def _read_answer(self, record: dict[str, Any], answer: Any) -> tuple[int, bytes]:
        chunk = _chunk(answer)
        if chunk is None:
            self._refuse(record, "the sandbox's answer is malformed")
        return int(answer["size"]), chunk

    def _list_answer(self, record: dict[str, Any],
                     answer: Any) -> tuple[list[FileEntry], bool]:
        raw = answer.get("entries") if isinstance(answer, dict) else None
        if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
            self._refuse(record, "the sandbox's listing is malformed")
        entries: list[FileEntry] = []
        for item in raw:
            entry = _entry(item)
            if entry is None:
                self._refuse(record, "the sandbox's listing holds a malformed entry")
            entries.append(entry)
        return entries, answer.get("truncated") is True


def _chunk(answer: Any) -> bytes | None:
    """The bytes of one read answer, if it is a sane one (at most one chunk)."""
    if not (isinstance(answer, dict) and _count(answer.get("size")) is not None
            and isinstance(answer.get("data"), str)
            and len(answer["data"]) <= 4 * (CHUNK_BYTES // 3 + 1)):
        return None
    try:
        chunk = base64.b64decode(answer["data"], validate=True)
    except binascii.Error:
        return None
    return chunk if len(chunk) <= CHUNK_BYTES else None


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63:
        return value
    return None


def _entry(item: object) -> FileEntry | None:
    """One listing entry as the sandbox sent it, if it is a sane one."""
    if not (isinstance(item, list) and len(item) == 3):
        return None
    name, size, kind = item
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS \
            or "/" in name or "\0" in name or name in {".", ".."}:
        return None
    if _count(size) is None or kind not in KINDS:
        return None
    return FileEntry(name=name, size=size, kind=kind)


def _recorded_path(path: object) -> str:
    """The path as its record holds it: cut at the cap; one that is not a string (refused
    by ``_admit``, recorded all the same: review s15c) as its repr."""
    return (path if isinstance(path, str) else repr(path))[:MAX_PATH_CHARS]


def _whole_transfer_deadline(size: int) -> float:
    """When a whole transfer of up to ``size`` bytes must be done: a few chunks' time, plus
    the time the slowest working sandbox takes to move it (so an operator's large
    ``file_transfer_mb`` stays usable). A sandbox answering each chunk or piece just
    inside ``CHUNK_TIMEOUT_S`` cannot hold the caller for one timeout a chunk (reads:
    review s14c; writes: a 64 MiB file was 16 chunks, 16 minutes)."""
    return (time.monotonic() + WHOLE_TRANSFER_CHUNKS * CHUNK_TIMEOUT_S
            + size / SLOWEST_TRANSFER_BYTES_PER_S)


def _shown(path: object) -> str:
    """The path as an error message names it: a long one is cut, so the reason after it
    stays readable (the audit record keeps the path itself)."""
    if isinstance(path, str) and len(path) > SHOWN_PATH_CHARS:
        return f"{path[:SHOWN_PATH_CHARS]!r}... ({len(path)} characters)"
    return repr(path)
