"""Docker engine backend: hardened containers, runtime runc or runsc (gVisor)."""
