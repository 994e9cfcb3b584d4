"""Sessions on a Ray cluster (the ``ray`` extra): ``RayRuntime`` and its sessions.

Importing this package imports Ray; ``import rlmbox`` never does.
"""

from rlmbox.cluster.remote_session import RemoteSession, RemoteSessionState
from rlmbox.cluster.runtime import RayRuntime

__all__ = ["RayRuntime", "RemoteSession", "RemoteSessionState"]
