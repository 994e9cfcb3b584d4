"""Context staging: host files made readable, read-only, at /rlmbox/context inside.

Locally a per-sandbox directory is bind-mounted read-only (a file is hard-linked when it is
already world-readable on the same filesystem, else copied). A remote engine cannot see
host paths, so there a per-sandbox volume is mounted read-only and filled through the
archive API of a never-started helper container. Either way 1 GB streams without being
held in memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tarfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

from rlmbox.errors import SandboxError
from rlmbox.sandboxes.docker.config import CONTEXT_MOUNT
from rlmbox.sandboxes.docker.engine import translated

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Stager(Protocol):
    #: True when ``discard`` can only succeed once the container is removed (a volume)
    discard_after_removal: bool

    def stage(self, source: Path, name: str) -> str: ...
    def discard(self) -> None: ...


def _open(source: Path, name: str) -> tuple[BinaryIO, os.stat_result]:
    """Opens a regular file, never through a symlink (it could name any host file)."""
    if not _NAME.match(name):
        raise SandboxError(f"context name {name!r} must match {_NAME.pattern}")
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise SandboxError(f"cannot stage {source}: {exc.strerror} "
                           "(not a regular file? symlinks are refused)") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SandboxError(f"cannot stage {source}: not a regular file")
    return os.fdopen(fd, "rb"), info


def private_root(root: Path) -> Path:
    """``root``, made by us for us: a real directory (not a symlink) that we own, mode 0700.

    Its path is predictable (/tmp/rlmbox-stage-<uid>), so another local user could create
    it first, or plant a symlink there, and then read or swap staged contexts. One owned by
    someone else, or not a directory, is refused, never followed; one of ours with looser
    modes (made by an older rlmbox) is closed to 0700.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, 0o700)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxError(f"the stage directory {root} is not a directory rlmbox made "
                           f"({exc.strerror}); remove it") from exc
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise SandboxError(
                f"the stage directory {root} belongs to uid {info.st_uid}, not to uid "
                f"{os.geteuid()}: another user made it; remove it")
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return root


class BindStager:
    """A host directory inside the private stage root, bind-mounted read-only into one
    container. Only we can pass the root (0700); the container reads the directory
    through its bind mount, which does not traverse the root."""

    discard_after_removal = False

    def __init__(self, host_dir: Path) -> None:
        self.host_dir = host_dir

    @classmethod
    def create(cls, root: Path, name: str) -> BindStager:
        host_dir = private_root(root) / name
        host_dir.mkdir(mode=0o755)
        # Readable by the container's uid (10001) through the mount; the files are 0444.
        os.chmod(host_dir, 0o755)  # noqa: S103
        return cls(host_dir)

    def stage(self, source: Path, name: str) -> str:
        data, info = _open(source, name)
        with data:
            target = self.host_dir / name
            if target.exists():
                raise SandboxError(f"context {name!r} is already staged")
            world_readable = bool(info.st_mode & stat.S_IROTH)
            if world_readable and info.st_dev == self.host_dir.stat().st_dev:
                with contextlib.suppress(OSError):
                    os.link(f"/proc/self/fd/{data.fileno()}", target)  # the file we checked
            if not target.exists():
                with open(target, "xb") as out:
                    shutil.copyfileobj(data, out, 1 << 20)
                os.chmod(target, 0o444)
        return f"{CONTEXT_MOUNT}/{name}"

    def discard(self) -> None:
        shutil.rmtree(self.host_dir, ignore_errors=True)


class ArchiveStager:
    """A per-sandbox volume, filled through a helper container's archive API."""

    discard_after_removal = True

    def __init__(self, client: Any, image: str, volume: str, labels: dict[str, str]) -> None:
        self._client = client
        self._image = image
        self.volume = volume
        self._labels = labels

    @classmethod
    def create(cls, client: Any, image: str, name: str, labels: dict[str, str]) -> ArchiveStager:
        volume = f"{name}-context"
        with translated(f"creating context volume {volume}"):
            client.api.create_volume(name=volume, labels=labels)
        return cls(client, image, volume, labels)

    def stage(self, source: Path, name: str) -> str:
        data, info = _open(source, name)
        helper = f"{self.volume}-stager"
        api = self._client.api
        try:
            with translated(f"staging {name} through {helper}"):
                api.create_container(
                    image=self._image, command=["true"], name=helper, labels=self._labels,
                    network_disabled=True, host_config=api.create_host_config(
                        network_mode="none", binds={self.volume: {"bind": "/ctx",
                                                                  "mode": "rw"}}))
                reader, writer = os.pipe()
                thread = threading.Thread(target=_write_tar, daemon=True,
                                          args=(writer, data, name, info.st_size))
                thread.start()
                with os.fdopen(reader, "rb") as stream:
                    api.put_archive(helper, "/ctx", _chunks(stream))
                thread.join()
        finally:
            data.close()
            with contextlib.suppress(Exception):
                api.remove_container(helper, force=True)
        return f"{CONTEXT_MOUNT}/{name}"

    def discard(self) -> None:
        with contextlib.suppress(Exception):
            self._client.api.remove_volume(self.volume, force=True)


def _chunks(stream: Any, size: int = 1024 * 1024) -> Any:
    while chunk := stream.read(size):
        yield chunk


def _write_tar(fd: int, data: BinaryIO, name: str, size: int) -> None:
    with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
        member = tarfile.TarInfo(name)
        member.size = size
        member.mode = 0o444
        tar.addfile(member, data)
