"""The one place rlmbox touches the Docker engine's client library.

Connects to the engine (``DOCKER_HOST`` or the local socket) and translates the docker SDK's
exceptions, which subclass ``requests`` errors, into the rlmbox tree at this boundary, with
what is missing and how to fix it when no engine answers.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from rlmbox.errors import SandboxError, SandboxUnavailable

_FIX = ("start a Docker engine (as root: 'bash scripts/provision.sh', which installs Debian's "
        "docker.io and starts dockerd) or point DOCKER_HOST at one")


def connect(base_url: str | None = None, timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` whose engine answered a ping."""
    try:
        import docker  # noqa: PLC0415 - optional dependency, imported where it is needed
    except ImportError as exc:
        raise SandboxUnavailable(
            "the docker Python SDK is not installed (pip install 'rlmbox[docker]')") from exc
    where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    _refuse_dead_unix_socket(where, timeout)
    handled = _chained(sys.exc_info()[1])   # the caller's, if it connects from an except
    client = None
    try:
        client = (docker.DockerClient(base_url=base_url, timeout=int(timeout)) if base_url
                  else docker.from_env(timeout=int(timeout)))
        client.ping()
    except Exception as exc:  # the SDK raises DockerException or raw requests errors here
        if client is not None:
            client.close()   # its connection pool holds the socket it tried
        _close_sockets_left_in(exc, docker, skip=handled)
        raise SandboxUnavailable(f"no Docker engine answers at {where}: {_short(exc)}; {_FIX}"
                                 ) from exc
    return client


def _refuse_dead_unix_socket(where: str, timeout: float) -> None:
    """Tries a Unix-socket engine's socket first, closing what it opened: the SDK leaks
    the socket of a connection that fails (its ``UnixHTTPConnection.connect``), which a
    host without a running engine would meet on every refused session. The path is read
    from the URL as the SDK reads it (``parse_host``), so every form it takes still works.
    An engine that stops between this probe and the SDK's own connect is met by
    :func:`_close_sockets_left_in` (tests/security/test_review_s8a.py)."""
    from docker.utils import parse_host  # noqa: PLC0415 - optional dependency

    try:
        url = parse_host(where)
    except Exception:  # a URL the SDK refuses: let the SDK say why
        return
    if not url.startswith("http+unix://"):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout)
        path = url.replace("http+unix://", "", 1)
        probe.connect(path if path.startswith("/") else "/" + path)   # as UnixHTTPAdapter
    except OSError as exc:
        raise SandboxUnavailable(f"no Docker engine answers at {where}: {exc}; {_FIX}") from exc
    finally:
        probe.close()


def _close_sockets_left_in(error: BaseException, sdk: ModuleType,
                           skip: list[BaseException]) -> None:
    """Closes the sockets the SDK's own frames still hold after a failed call: its Unix
    connect opens a socket and, when its connect fails, leaves it in the failing frame,
    kept alive by the traceback that ``SandboxUnavailable`` chains (an engine that stopped
    after :func:`_refuse_dead_unix_socket` answered). Only frames of the SDK's files, and
    only exceptions raised by this call (not ``skip``: what the caller was handling, whose
    frames may hold sockets in use; review s15a)."""
    sdk_dir = os.path.dirname(sdk.__file__ or "") + os.sep
    skipped = {id(exc) for exc in skip}
    for exc in _chained(error):
        if id(exc) in skipped:
            continue
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.startswith(sdk_dir):
                for value in list(tb.tb_frame.f_locals.values()):
                    if isinstance(value, socket.socket):
                        value.close()
            tb = tb.tb_next


def _chained(error: BaseException | None) -> list[BaseException]:
    """``error`` and every exception chained to it (cause and context), once each."""
    found: list[BaseException] = []
    seen: set[int] = set()
    pending = [error]
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        found.append(exc)
        pending += [exc.__cause__, exc.__context__]
    return found


def is_local(client: Any) -> bool:
    """True when the engine runs on this machine (a Unix socket), so bind mounts work.

    docker-py names a Unix-socket engine ``http+docker://localhost`` (its socket adapter),
    older releases ``http+unix://...``; ``ssh`` and TCP engines are remote.
    """
    url = str(client.api.base_url)
    return url == "http+docker://localhost" or url.startswith(("http+unix://", "unix://"))


def runtimes(client: Any) -> frozenset[str]:
    """OCI runtimes the engine has registered (``runc``, ``runsc``, ...)."""
    with translated("reading the engine's runtimes"):
        info = client.info()
    return frozenset(info.get("Runtimes", {}) or {})


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raises docker and requests errors as ``SandboxError`` saying what was being done."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    try:
        yield
    except docker.errors.NotFound as exc:
        raise SandboxError(f"{what}: not found: {_short(exc)}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise SandboxUnavailable(f"{what}: the Docker engine stopped answering: {_short(exc)}; "
                                 f"{_FIX}") from exc
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise SandboxError(f"{what}: {_short(exc)}") from exc


def _short(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = str(explanation or exc).strip()
    return text if len(text) <= 300 else text[:297] + "..."
