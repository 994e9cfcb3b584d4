"""The double as the e2b backend's endpoint for a whole test run: started once, on
first use, and closed (every VM killed) when the run ends.

The SDK is pointed at the double through the host environment the backend reads
(``E2B_API_KEY``, ``E2B_API_URL``, ``E2B_SANDBOX_URL``); the address is checked to be
127.0.0.1 before anything uses it, so no test can reach E2B or any other host.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import threading
import urllib.parse

from .server import E2BDouble, Template

# A real E2B account is used only by the live suite (tests/e2b_backend/test_e2b_live.py
# and, with RLMBOX_E2B_LIVE=1, the security corpus), which takes it from here: every other
# test sees the double's variables or none at all. tests/conftest.py imports this first.
E2B_VARIABLES = ("E2B_API_KEY", "E2B_DOMAIN", "E2B_API_URL", "E2B_SANDBOX_URL")
LIVE_E2B_ENV = {name: os.environ.pop(name) for name in E2B_VARIABLES if name in os.environ}
_lock = threading.Lock()
_double: E2BDouble | None = None
# "rlmbox" is the size the security harness's policies expect (256 MB: a memory bomb meets
# the VM's own limit soon, as in a real VM of that size)
TEMPLATES = {"rlmbox": Template(cpu_count=1, memory_mb=256), "big": Template(2, 1024, 256)}


def assert_local(url: str) -> None:
    """Fails unless ``url`` is on the loopback address."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise AssertionError(f"the E2B double must listen on 127.0.0.1, not {url}")


def live_requested() -> bool:
    """True when the run asks for real E2B (RLMBOX_E2B_LIVE=1) and has a key for it."""
    return os.environ.get("RLMBOX_E2B_LIVE") == "1" and "E2B_API_KEY" in LIVE_E2B_ENV


def use_live_e2b() -> None:
    """Points the backend at the real E2B account the run was started with."""
    for name in E2B_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(LIVE_E2B_ENV)


def shared_double() -> E2BDouble:
    """The run's double, with the host environment pointing the backend at it."""
    global _double  # noqa: PLW0603 - one double per test process
    with _lock:
        if _double is None:
            _double = E2BDouble(templates=dict(TEMPLATES))
            assert_local(_double.url)
            atexit.register(_double.close)
        os.environ.update(E2B_API_KEY=_double.api_key, E2B_API_URL=_double.url,
                          E2B_SANDBOX_URL=_double.url)
        os.environ.pop("E2B_DOMAIN", None)
        return _double
