"""The ``e2b`` backend: each sandbox is a remote Firecracker microVM on E2B (cloud or
self-hosted), driven through the ``e2b-code-interpreter`` SDK (the ``e2b`` extra)."""
