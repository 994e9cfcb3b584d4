"""Review s8a: attacks on the writer's kept segment descriptors (``BodyStore._stored``,
``_reader``, ``write_durably``, ``body_segments.is_live``) and on the Docker engine's
Unix-socket probe (``engine.connect``, ``_refuse_dead_unix_socket``).

What broke, and is fixed (each test was a strict xfail on the commit it attacked):

- A kept descriptor follows the *inode*, not the path: a segment an operator moved out of
  ``bodies/`` (still linked elsewhere) was still trusted, and the writer even kept
  appending new bodies to the moved file; the new records named bodies the log cannot read.
  Now each batch first drops kept descriptors whose path names another file or none, and
  appends to a new segment when its own was moved.
- ``is_live`` read the header at the remembered offset but never checked that it names the
  digest asked about: a segment replaced or truncated by an operator with another live
  body at that offset made the writer skip storing the body. It now checks digest and size.
- A segment an operator removed (removing a segment erases its bodies, says
  docs/audit-format.md) stayed open through the kept reader after the next batch.
- The probe read ``unix://`` URLs itself and refused forms the SDK accepts (the legacy
  ``unix://path``, a trailing slash, surrounding blanks): it now reads them as the SDK does.

Still open (strict xfail, documented in ``engine._refuse_dead_unix_socket``):

- The probe is a check before the SDK's own connect: an engine that stops between the two
  still leaks the SDK's socket to the garbage collector (a ResourceWarning, nothing else).
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.body_segments import encode_entry
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.errors import SandboxUnavailable
from rlmbox.sandboxes.docker import engine


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fresh_store(tmp_path: Path, **kwargs: int) -> BodyStore:
    root = tmp_path / "bodies"
    root.mkdir()
    store = BodyStore(root, **kwargs)
    store.open_for_append()
    return store


# -- body segments -------------------------------------------------------------------------


def _recurs_and_reads_back(store: BodyStore, body: bytes) -> bool:
    """The body is recorded again after the operator's act: it must be stored again."""
    store.write_durably({_digest(body): body})
    store.close()
    return BodyStore(store.root).read(_digest(body)) == body


def test_a_segment_moved_out_while_the_log_is_open_gets_its_bodies_again(
        tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    archive = tmp_path / "archive"
    archive.mkdir()
    with AuditLog(logdir) as log:
        log.append("a", bodies={"code": "print('moved?')"})
        log.sync()
        log.append("b", bodies={"code": "print('moved?')"})   # the writer now knows it
        log.sync()
        segment = logdir / "bodies" / "segment-000001.bin"
        shutil.move(segment, archive / segment.name)   # an operator archives it
        last = log.append("c", bodies={"code": "print('moved?')", "out": "a new body"})
    store = BodyStore(logdir / "bodies")
    assert store.read(last["code_sha256"]) == b"print('moved?')"
    assert store.read(last["out_sha256"]) == b"a new body"
    assert last["seq"] not in [m.seq for m in verify_log(logdir).missing_bodies]


def test_a_full_segment_moved_out_is_not_trusted_through_a_kept_descriptor(
        tmp_path: Path) -> None:
    store = _fresh_store(tmp_path, max_segment_bytes=1)   # a new segment for every batch
    body = b"kept elsewhere"
    store.write_durably({_digest(body): body})
    store.write_durably({_digest(body): body})   # opens the kept reader on segment 1
    other = b"another batch"
    store.write_durably({_digest(other): other})   # segment 2 is the current one
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(store.root / "segment-000001.bin", archive / "segment-000001.bin")
    assert _recurs_and_reads_back(store, body)


def test_a_replaced_segment_does_not_vouch_for_a_body_it_lacks(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    body, stranger = b"personal data A", b"other body  Z!!"
    store.write_durably({_digest(body): body})
    segment = store.root / "segment-000001.bin"
    replacement = store.root / "replacement.tmp"
    replacement.write_bytes(encode_entry(_digest(stranger), stranger))
    os.replace(replacement, segment)   # an operator replaces the segment
    assert _recurs_and_reads_back(store, body)


def test_a_truncated_segment_does_not_vouch_for_a_body_it_lost(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    body, later = b"body A", b"body C"
    store.write_durably({_digest(body): body})
    store.write_durably({_digest(body): body})
    os.truncate(store.root / "segment-000001.bin", 0)   # an operator cuts the segment
    store.write_durably({_digest(later): later})   # lands where the lost body was
    assert _recurs_and_reads_back(store, body)
    assert BodyStore(store.root).read(_digest(later)) == later


def test_a_removed_segment_is_not_held_open_after_the_next_batch(tmp_path: Path) -> None:
    store = _fresh_store(tmp_path)
    secret = b"personal data to erase"
    store.write_durably({_digest(secret): secret})
    store.write_durably({_digest(secret): secret})   # opens the kept reader
    segment = store.root / "segment-000001.bin"
    segment.unlink()   # "Removing a whole segment file erases every body in it"
    unrelated = b"the next batch"
    store.write_durably({_digest(unrelated): unrelated})
    try:
        held = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.startswith(str(segment)):
                held.append(target)
        assert held == []
    finally:
        store.close()


# -- the Docker engine's Unix-socket probe -------------------------------------------------


class _FakeEngine(BaseHTTPRequestHandler):
    """Answers ``/_ping`` and ``/version`` like an engine, enough for ``connect``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = (b"OK" if self.path.endswith("/_ping")
                else json.dumps({"ApiVersion": "1.41", "Version": "fake"}).encode())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return

    def address_string(self) -> str:
        return "unix"


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def fake_engine() -> Iterator[Path]:
    """A short lowercase path: Unix socket paths are capped at 108 bytes."""
    directory = Path(tempfile.mkdtemp(prefix="rbx-", dir="/tmp"))
    path = directory / "engine.sock"
    server = _UnixServer(str(path), _FakeEngine)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()
    thread.join(5)
    shutil.rmtree(directory, ignore_errors=True)


def test_the_fake_engine_answers_at_its_absolute_unix_url(fake_engine: Path) -> None:
    """The control: the probe lets the canonical form through."""
    client = engine.connect(f"unix://{fake_engine}", timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()


@pytest.mark.parametrize("form", ["legacy", "trailing_slash", "trailing_blank"])
@pytest.mark.parametrize("via", ["base_url", "DOCKER_HOST"])
def test_docker_host_forms_the_sdk_accepts_still_connect(
        fake_engine: Path, form: str, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = {"legacy": "unix://" + str(fake_engine).lstrip("/"),   # unix://tmp/...: legacy
           "trailing_slash": f"unix://{fake_engine}/",
           "trailing_blank": f"unix://{fake_engine} "}[form]
    assert url.lower() == url   # the SDK lowercases the legacy form's first component
    if via == "DOCKER_HOST":
        monkeypatch.setenv("DOCKER_HOST", url)
        client = engine.connect(timeout=5)
    else:
        client = engine.connect(url, timeout=5)
    try:
        assert client.ping()
    finally:
        client.close()


def test_an_engine_that_stops_after_the_probe_leaves_nothing_open(
        fake_engine: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fake_engine.with_name("stopping.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    probe = getattr(engine, "_refuse_dead_unix_socket", None)
    if probe is None:   # no probe any more: the engine is simply gone
        listener.close()
    else:
        def probe_then_the_engine_stops(where: str, timeout: float) -> None:
            probe(where, timeout)   # the engine answers the probe ...
            listener.close()   # ... and stops (a dockerd restart) before the SDK connects

        monkeypatch.setattr(engine, "_refuse_dead_unix_socket", probe_then_the_engine_stops)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(SandboxUnavailable, match="no Docker engine answers"):
                engine.connect(f"unix://{path}", timeout=5)
            gc.collect()
    finally:
        listener.close()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
