"""TEST DOUBLE of E2B's control plane and envd, for rlmbox's tests. NOT E2B.

Serves, on 127.0.0.1 and an ephemeral port, exactly the endpoints rlmbox's e2b backend
uses, written from E2B's published OpenAPI and protobuf specs. Each "microVM" is a local
rlmbox process jail (no virtualization at all), so the unmodified SDK and the real agent
run end to end; what only a real Firecracker VM provides is not tested here (see
docs/backends-e2b.md).
"""

from .server import E2BDouble, Faults, Template

__all__ = ["E2BDouble", "Faults", "Template"]
