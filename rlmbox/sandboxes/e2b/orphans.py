"""Finding and killing E2B sandboxes nobody will close: ``rlmbox gc`` and the daemon's
reconciliation.

Every sandbox rlmbox creates carries the owner tags of ``sandboxes/owner.py`` as E2B
metadata. A sandbox is an orphan when its owner ran on this host in this boot and that
exact process is gone (or ran in an earlier boot of this host); sandboxes of other hosts
on the same E2B team are never judged from here. Their own ``timeout_s`` ends them anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.e2b.calls import call
from rlmbox.sandboxes.owner import LABEL_OWNER, LABEL_OWNER_PID, owner_gone

_PAGE = 100


def _listed(sdk: Any, params: dict[str, Any], metadata: dict[str, str] | None) -> list[Any]:
    from e2b import SandboxQuery  # noqa: PLC0415 - optional dependency

    paginator = sdk.list(query=SandboxQuery(metadata=metadata), limit=_PAGE, **params)
    found: list[Any] = []
    while paginator.has_next:
        found.extend(call("listing E2B sandboxes", paginator.next_items))
    return found


def _kill(sdk: Any, params: dict[str, Any], sandbox_id: str) -> None:
    call(f"killing E2B sandbox {sandbox_id}", lambda: sdk.kill(sandbox_id, **params))


def collect_orphans(sdk: Any, params: dict[str, Any]) -> list[str]:
    """Kills the account's rlmbox sandboxes whose owner is gone; returns their ids."""
    killed = []
    for info in _listed(sdk, params, None):
        metadata = dict(info.metadata or {})
        if LABEL_OWNER in metadata and owner_gone(metadata):
            _kill(sdk, params, info.sandbox_id)
            killed.append(str(info.sandbox_id))
    return killed


def kill_by_tag(sdk: Any, params: dict[str, Any], key: str, value: str) -> list[str]:
    """Kills every sandbox tagged ``key=value`` (a create whose answer was lost);
    best effort: an E2B that cannot be reached leaves it to ``timeout_s`` and gc."""
    return _kill_chosen(sdk, params, {key: value}, lambda tags: tags.get(key) == value)


def kill_owned(sdk: Any, params: dict[str, Any], owner_id: str) -> list[str]:
    """Kills every sandbox of the owner ``owner_id`` (an ``Owner.id``: a node actor's
    reaper, once the actor is dead); best effort, as :func:`kill_by_tag`. Listed by the
    owner's pid tag, chosen by its whole id: a metadata query for a value holding ``/``
    and ``:`` matched nothing (on the test double at least)."""
    pid = owner_id.rsplit(":", 2)[-2] if owner_id.count(":") >= 2 else owner_id
    return _kill_chosen(sdk, params, {LABEL_OWNER_PID: pid},
                        lambda tags: tags.get(LABEL_OWNER) == owner_id)


def _kill_chosen(sdk: Any, params: dict[str, Any], query: dict[str, str],
                 chosen: Callable[[dict[str, str]], bool]) -> list[str]:
    killed = []
    try:
        for info in _listed(sdk, params, query):
            if not chosen(dict(info.metadata or {})):
                continue   # an API that ignored the filter: never kill what is not ours
            _kill(sdk, params, info.sandbox_id)
            killed.append(str(info.sandbox_id))
    except SandboxUnavailable:
        pass
    return killed
