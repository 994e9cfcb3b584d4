"""Sessions on a Ray cluster (the ``ray`` extra): ``RayRuntime`` and its sessions.

Importing this package imports Ray; ``import rlmbox`` never does. Before it does, Ray's
usage reports are turned off for this process (and the Ray processes it starts) unless
``RAY_USAGE_STATS_ENABLED`` is already set: a sandbox runtime does not phone home.
"""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from rlmbox.cluster.remote_session import RemoteSession, RemoteSessionState
from rlmbox.cluster.runtime import RayRuntime

__all__ = ["RayRuntime", "RemoteSession", "RemoteSessionState"]
