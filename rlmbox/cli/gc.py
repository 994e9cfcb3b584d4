"""``rlmbox gc``: remove the sandboxes whose rlmbox owner process is gone.

Docker containers and volumes (the default), or, with ``--backend e2b``, the E2B sandboxes
of the account in the host's environment (``E2B_API_KEY``). Sandboxes of live owners, and
of owners on other hosts, are left alone.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    gc = subparsers.add_parser(
        "gc", help="remove sandboxes (containers, E2B VMs) whose rlmbox owner process is gone")
    gc.add_argument("--backend", choices=("docker", "e2b"), default="docker",
                    help="which backend's orphans to remove (default: docker)")
    gc.set_defaults(handler=run_gc)


def run_gc(args: argparse.Namespace) -> int:
    if args.backend == "e2b":
        from rlmbox.sandboxes.e2b.backend import E2BBackend  # noqa: PLC0415 - optional SDK

        killed = E2BBackend().collect_garbage()
        for sandbox_id in killed:
            print(f"killed {sandbox_id}")
        print(f"{len(killed)} orphaned E2B sandbox(es) killed")
        return 0
    from rlmbox.sandboxes.docker.backend import default_stage_root  # noqa: PLC0415
    from rlmbox.sandboxes.docker.engine import connect  # noqa: PLC0415
    from rlmbox.sandboxes.docker.owner import collect_garbage  # noqa: PLC0415

    removed = collect_garbage(connect(), default_stage_root())
    for name in removed:
        print(f"removed {name}")
    print(f"{len(removed)} orphaned container(s)/volume(s) removed")
    return 0
