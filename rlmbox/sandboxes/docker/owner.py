"""Removing the containers and volumes whose owner is gone (``rlmbox gc``), or of one
owner (a node actor's sandbox reaper, once that actor is dead).

Every container (and context volume) carries the owner labels of ``sandboxes/owner.py``;
these name its staging and socket directories too, removed with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from rlmbox.errors import SandboxError
from rlmbox.sandboxes.docker.engine import translated
from rlmbox.sandboxes.docker.socket_transport import default_socket_root
from rlmbox.sandboxes.owner import LABEL_OWNER, owner_gone

LABEL_STAGE_DIR: Final = "org.rlmbox.stage-dir"
LABEL_SOCKET_DIR: Final = "org.rlmbox.socket-dir"


def collect_garbage(client: Any, stage_root: Path | None = None,
                    socket_root: Path | None = None) -> list[str]:
    """Removes containers and context volumes whose owner is gone, with their staging and
    socket directories; returns their names."""
    return _remove_where(client, owner_gone, {"label": LABEL_OWNER}, stage_root, socket_root)


def remove_owned(client: Any, owner_id: str, stage_root: Path | None = None,
                 socket_root: Path | None = None) -> list[str]:
    """Kills and removes every container and context volume of the owner ``owner_id`` (one
    ``Owner.id``), alive or not, with their directories; returns their names. Nothing of
    another owner is touched."""
    return _remove_where(client, lambda labels: labels.get(LABEL_OWNER) == owner_id,
                         {"label": f"{LABEL_OWNER}={owner_id}"}, stage_root, socket_root)


def _remove_where(client: Any, chosen: Callable[[dict[str, str]], bool],
                  filters: dict[str, str], stage_root: Path | None,
                  socket_root: Path | None) -> list[str]:
    # ``filters`` narrows the engine's listing; ``chosen`` decides (an engine that ignored
    # the filter never gets a container removed that is not chosen)
    removed: list[str] = []
    failures: list[str] = []
    with translated("listing rlmbox containers"):
        containers = client.api.containers(all=True, filters=filters)
    for item in containers:
        labels = item.get("Labels") or {}
        if not chosen(labels):
            continue
        if not _removed(f"removing container {item['Id'][:12]}", (404, 409), failures,
                        partial(client.api.remove_container, item["Id"], force=True, v=True)):
            continue
        removed.append((item.get("Names") or [item["Id"][:12]])[0].lstrip("/"))
        _remove_stage_dir(labels.get(LABEL_STAGE_DIR), stage_root)
        _remove_stage_dir(labels.get(LABEL_SOCKET_DIR), socket_root or default_socket_root())
    with translated("listing rlmbox volumes"):
        volumes = client.api.volumes(filters=filters).get("Volumes") or []
    for volume in volumes:
        if chosen(volume.get("Labels") or {}):
            if not _removed(f"removing volume {volume['Name']}", (404,), failures,
                            partial(client.api.remove_volume, volume["Name"], force=True)):
                continue
            removed.append(volume["Name"])
    if failures:
        raise SandboxError(f"removed {len(removed)}, but {len(failures)} failed: "
                           + "; ".join(failures))
    return removed


def _removed(what: str, gone: tuple[int, ...], failures: list[str],
             remove: Callable[[], object]) -> bool:
    """Runs one engine removal; True when the thing is gone. An answer with a status in
    ``gone`` (already gone, or being removed) is not an error; any other failure is noted
    in ``failures`` rather than raised, so one that fails does not spare the others."""
    try:
        with translated(what):
            try:
                remove()
            except Exception as exc:
                if getattr(getattr(exc, "response", None), "status_code", None) not in gone:
                    raise
    except Exception as exc:
        failures.append(str(exc))
        return False
    return True


def _remove_stage_dir(path: str | None, stage_root: Path | None) -> None:
    # Only delete directories under our own stage (or socket) root: labels could name
    # any path.
    if not path or stage_root is None:
        return
    target = Path(path).resolve()
    if target.parent == stage_root.resolve() and target.name.startswith("rlmbox-"):
        shutil.rmtree(target, ignore_errors=True)
