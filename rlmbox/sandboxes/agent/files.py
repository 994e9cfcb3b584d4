"""The agent's side of files in and out of a session: one chunk a ``file`` frame.

Paths are resolved here, inside the sandbox, so the host never touches a path of its own:
the directory holding the file must resolve (symlinks followed) into one of the ``roots``
the host sent, and the file itself is opened with ``O_NOFOLLOW``, so a symlink that model
code planted is refused rather than followed. Nothing here is a security boundary (model
code shares this process and could answer anything); the sandbox's walls are, and the
host checks every answer. This makes the honest path correct and bounded.
"""

from __future__ import annotations

import base64
import os
import signal
import stat

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any

MAX_ENTRIES = 10_000
_MAX_ERROR_CHARS = 500


def handle(frame: dict[str, Any]) -> dict[str, Any]:
    """The ``result`` frame answering one ``file`` frame."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # over file_size_mb: EFBIG
    try:
        answer = _OPS[frame["op"]](frame, [str(r) for r in frame["roots"]])
    except (OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc.strerror if isinstance(exc, OSError) else exc}"
        return {"t": "result", "id": frame["id"], "status": "error",
                "error": error[:_MAX_ERROR_CHARS]}
    finally:
        signal.signal(signal.SIGXFSZ, previous)
    return {"t": "result", "id": frame["id"], "status": "ok", "has_answer": True,
            "answer": answer}


def _inside(real: str, roots: list[str], *, equal_ok: bool) -> bool:
    for root in roots:
        real_root = os.path.realpath(root)
        if real.startswith(real_root.rstrip("/") + "/") or (equal_ok and real == real_root):
            return True
    return False


def _checked_parent(path: str, roots: list[str]) -> None:
    """The directory of ``path``, resolved here, must lie in the writable area."""
    if not _inside(os.path.realpath(os.path.dirname(path)), roots, equal_ok=True):
        raise ValueError("the path leaves the writable area (through a symlink)")


def _write(frame: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    path = frame["path"]
    _checked_parent(path, roots)
    offset = int(frame.get("offset", 0))
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (
        os.O_CREAT | os.O_TRUNC if offset == 0 else 0)
    fd = os.open(path, flags, 0o644)
    try:
        _regular(fd)
        data = base64.b64decode(frame.get("data", ""), validate=True)
        os.lseek(fd, offset, os.SEEK_SET)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(path)   # no half-written file is left for model code to trust
        raise
    os.close(fd)
    return {"size": offset + len(data)}


def _read(frame: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    path = frame["path"]
    _checked_parent(path, roots)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = _regular(fd)
        os.lseek(fd, int(frame.get("offset", 0)), os.SEEK_SET)
        data = os.read(fd, int(frame.get("limit", 0)))
    finally:
        os.close(fd)
    return {"size": info.st_size, "data": base64.b64encode(data).decode("ascii")}


def _regular(fd: int) -> os.stat_result:
    """Only regular files move (a FIFO would block the agent, a device is not a file)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    return info


def _list(frame: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    real = os.path.realpath(frame["path"])
    if not _inside(real, roots, equal_ok=True):
        raise ValueError("the path leaves the writable area (through a symlink)")
    entries: list[list[Any]] = []
    with os.scandir(real) as found:
        for entry in found:
            if len(entries) == MAX_ENTRIES:
                return {"entries": entries, "truncated": True}
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue   # gone while listing
            entries.append([entry.name, info.st_size, _kind(info.st_mode)])
    return {"entries": entries, "truncated": False}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


_OPS = {"write": _write, "read": _read, "list": _list}
