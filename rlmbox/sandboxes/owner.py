"""Who owns a sandbox: the tags every container and E2B sandbox carries, and when the
owner is provably gone.

The owner is a process named by host, boot, pid and process start time: a pid alone could
be reused. A sandbox is an orphan only when its owner ran on this host in this boot and
that exact process no longer exists; owners on other hosts sharing a remote engine or an
E2B team are never judged from here. Docker stores the tags as labels, E2B as metadata.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LABEL_OWNER: Final = "org.rlmbox.owner"          # host/boot:pid:start, one string
LABEL_OWNER_HOST: Final = "org.rlmbox.owner-host"
LABEL_OWNER_PID: Final = "org.rlmbox.owner-pid"
LABEL_OWNER_START: Final = "org.rlmbox.owner-start"
LABEL_SESSION: Final = "org.rlmbox.session"
LABEL_CREATED: Final = "org.rlmbox.created-at"
LABEL_TENANT: Final = "org.rlmbox.tenant"


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

    def labels(self, session: str, tenant: str | None = None) -> dict[str, str]:
        """The tags of a sandbox this owner creates (``tenant`` when a daemon's)."""
        labels = {LABEL_OWNER: self.id, LABEL_OWNER_HOST: self.host,
                  LABEL_OWNER_PID: str(self.pid), LABEL_OWNER_START: self.start,
                  LABEL_SESSION: session,
                  LABEL_CREATED: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        if tenant is not None:
            labels[LABEL_TENANT] = tenant
        return labels


def host_id() -> str:
    """This machine in this boot (hostname, machine id, boot id): a reboot ends every owner
    that ran before it. Hostnames repeat across machines; the machine id tells them apart."""
    return f"{socket.gethostname()}/{_machine_id()}/{_read_id('/proc/sys/kernel/random/boot_id')}"


def _read_id(path: str) -> str:
    try:
        return Path(path).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def _machine_id() -> str:
    return _read_id("/etc/machine-id")


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
        # Another boot of this machine is gone for sure; another machine (a hostname can
        # repeat: the machine id must match too, and be known) is not ours to judge.
        name, _, rest = host.partition("/")
        machine = rest.partition("/")[0]
        return name == socket.gethostname() and machine == _machine_id() != "unknown"
    return _start_time(int(pid)) != start
