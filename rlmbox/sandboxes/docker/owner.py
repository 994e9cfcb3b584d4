"""Who owns a container, and removing the containers whose owner is gone.

Every container (and context volume) carries labels naming its owner process as host, boot,
pid and process start time: a pid alone could be reused. A container is an orphan only
when its owner ran on this host in this boot and that exact process no longer exists;
owners on other hosts sharing a remote engine are never judged from here.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from rlmbox.sandboxes.docker.engine import translated
from rlmbox.sandboxes.docker.socket_transport import default_socket_root

LABEL_OWNER: Final = "org.rlmbox.owner"          # host/boot:pid:start, one string
LABEL_OWNER_HOST: Final = "org.rlmbox.owner-host"
LABEL_OWNER_PID: Final = "org.rlmbox.owner-pid"
LABEL_OWNER_START: Final = "org.rlmbox.owner-start"
LABEL_SESSION: Final = "org.rlmbox.session"
LABEL_CREATED: Final = "org.rlmbox.created-at"
LABEL_STAGE_DIR: Final = "org.rlmbox.stage-dir"
LABEL_SOCKET_DIR: Final = "org.rlmbox.socket-dir"


@dataclass(frozen=True)
class Owner:
    """A process identity that survives pid reuse."""

    host: str
    pid: int
    start: str

    @classmethod
    def current(cls) -> Owner:
        return cls(host=host_id(), pid=os.getpid(), start=_start_time(os.getpid()) or "?")

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    def labels(self, session: str) -> dict[str, str]:
        return {LABEL_OWNER: self.id, LABEL_OWNER_HOST: self.host,
                LABEL_OWNER_PID: str(self.pid), LABEL_OWNER_START: self.start,
                LABEL_SESSION: session,
                LABEL_CREATED: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def host_id() -> str:
    """This host in this boot: a reboot ends every owner that ran before it."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown-boot"
    return f"{socket.gethostname()}/{boot}"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may hold spaces, so split after ')'.
    return stat.rpartition(")")[2].split()[19]


def owner_gone(labels: dict[str, str]) -> bool:
    """True only when the owner is provably dead: same host and boot, process not there."""
    host, pid, start = (labels.get(LABEL_OWNER_HOST), labels.get(LABEL_OWNER_PID),
                        labels.get(LABEL_OWNER_START))
    if not host or not pid or not pid.isdigit():
        return False
    if host != host_id():
        # Another boot of this machine is gone for sure; another machine is not ours to judge.
        return host.split("/", 1)[0] == socket.gethostname()
    return _start_time(int(pid)) != start


def collect_garbage(client: Any, stage_root: Path | None = None,
                    socket_root: Path | None = None) -> list[str]:
    """Removes containers and context volumes whose owner is gone, with their staging and
    socket directories; returns their names."""
    removed: list[str] = []
    with translated("listing rlmbox containers"):
        containers = client.api.containers(all=True, filters={"label": LABEL_OWNER})
    for item in containers:
        labels = item.get("Labels") or {}
        if not owner_gone(labels):
            continue
        with translated(f"removing orphaned container {item['Id'][:12]}"):
            try:
                client.api.remove_container(item["Id"], force=True, v=True)
            except Exception as exc:  # gone already, or being removed: not an error here
                if getattr(getattr(exc, "response", None), "status_code", None) not in (404, 409):
                    raise
        removed.append((item.get("Names") or [item["Id"][:12]])[0].lstrip("/"))
        _remove_stage_dir(labels.get(LABEL_STAGE_DIR), stage_root)
        _remove_stage_dir(labels.get(LABEL_SOCKET_DIR), socket_root or default_socket_root())
    with translated("listing rlmbox volumes"):
        volumes = client.api.volumes(filters={"label": LABEL_OWNER}).get("Volumes") or []
    for volume in volumes:
        if owner_gone(volume.get("Labels") or {}):
            with translated(f"removing orphaned volume {volume['Name']}"):
                try:
                    client.api.remove_volume(volume["Name"], force=True)
                except Exception as exc:
                    if getattr(getattr(exc, "response", None), "status_code", None) != 404:
                        raise
            removed.append(volume["Name"])
    return removed


def _remove_stage_dir(path: str | None, stage_root: Path | None) -> None:
    # Only delete directories under our own stage (or socket) root: labels could name
    # any path.
    if not path or stage_root is None:
        return
    target = Path(path).resolve()
    if target.parent == stage_root.resolve() and target.name.startswith("rlmbox-"):
        shutil.rmtree(target, ignore_errors=True)
