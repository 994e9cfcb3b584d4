"""Removing the containers and volumes whose owner is gone (``rlmbox gc``).

Every container (and context volume) carries the owner labels of ``sandboxes/owner.py``;
these name its staging and socket directories too, removed with it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

from rlmbox.sandboxes.docker.engine import translated
from rlmbox.sandboxes.docker.socket_transport import default_socket_root
from rlmbox.sandboxes.owner import LABEL_OWNER, owner_gone

LABEL_STAGE_DIR: Final = "org.rlmbox.stage-dir"
LABEL_SOCKET_DIR: Final = "org.rlmbox.socket-dir"


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
