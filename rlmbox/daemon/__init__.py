"""The rlmbox daemon (``rlmbox serve``): HTTP over a Unix socket, tenants, SQLite state."""
