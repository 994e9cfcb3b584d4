"""Files in and out of a session: ``write_file``, ``read_file``, ``list_files``.

Only the sandbox's writable area can be reached, resolved inside the sandbox (a symlink
that leaves the area is refused), every transfer is decided by the policy as
``files.write`` / ``files.read`` / ``files.list`` and audited with the content by digest,
and ``limits.file_transfer_mb`` caps each transfer. Files larger than one frame travel in
chunks.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from rlmbox.errors import FileTransferRefused, PolicyDenied

from .harness import Runtimes, events

FILE_RULES = [{"id": "permit-files", "effect": "permit", "function": "files.*"}]


def test_text_and_binary_round_trip_and_model_code_sees_them(runtimes: Runtimes) -> None:
    """A file larger than one 8 MiB frame goes in and out intact, model code reads what
    the host wrote, and the host reads what model code wrote."""
    rt = runtimes(rules=FILE_RULES, limits={"file_transfer_mb": 16})
    big = os.urandom(9 * 1024 * 1024)
    with rt.session() as s:
        s.write_file("/tmp/note.txt", "héllo\n")
        s.write_file("/tmp/blob.bin", big)
        r = s.exec("import hashlib\n"
                   "print(open('/tmp/note.txt', encoding='utf-8').read(), end='')\n"
                   "print(hashlib.sha256(open('/tmp/blob.bin', 'rb').read()).hexdigest())\n"
                   "open('/tmp/out.bin', 'wb').write(bytes(range(256)) * 4)")
        assert r.status == "ok", r.error
        assert r.stdout == "héllo\n" + hashlib.sha256(big).hexdigest() + "\n"
        assert s.read_file("/tmp/note.txt") == "héllo\n".encode()
        assert s.read_file("/tmp/blob.bin") == big
        assert s.read_file("/tmp/out.bin") == bytes(range(256)) * 4
        listing = {e["name"]: e for e in s.list_files("/tmp")}
    assert listing["blob.bin"] == {"name": "blob.bin", "size": len(big), "kind": "file"}
    assert listing["out.bin"]["size"] == 1024
    written = events(rt, "file.transfer", function="files.write", path="/tmp/blob.bin")
    assert written[0]["size"] == len(big)
    assert written[0]["outcome"] == "ok"
    assert written[0]["content_sha256"] == hashlib.sha256(big).hexdigest()


@pytest.mark.parametrize("path", ["/etc/passwd", "/tmp/../etc/passwd", "tmp/x", "/tmp",
                                  "/usr/lib/x", "/tmp/a\x00b", "/dev/null", "//tmp/x"])
def test_a_path_outside_the_writable_area_is_refused(runtimes: Runtimes, path: str) -> None:
    rt = runtimes(rules=FILE_RULES)
    with rt.session() as s:
        with pytest.raises(FileTransferRefused):
            s.read_file(path)
        with pytest.raises(FileTransferRefused):
            s.write_file(path, b"x")
    assert events(rt, "file.transfer", outcome="refused")


def test_a_symlink_that_leaves_the_area_is_refused(runtimes: Runtimes) -> None:
    """Model code plants links out of /tmp; the host's read, write and listing through
    them are refused, and nothing outside changes."""
    rt = runtimes(rules=FILE_RULES)
    with rt.session() as s:
        r = s.exec("import os\nos.symlink('/etc/passwd', '/tmp/pw')\n"
                   "os.symlink('/etc', '/tmp/etc')\nos.symlink('/tmp/inside', '/tmp/hop')")
        assert r.status == "ok", r.error
        for attempt in (lambda: s.read_file("/tmp/pw"), lambda: s.read_file("/tmp/etc/passwd"),
                        lambda: s.write_file("/tmp/pw", b"x"),
                        lambda: s.write_file("/tmp/etc/rlmbox-planted", b"x"),
                        lambda: s.list_files("/tmp/etc")):
            with pytest.raises(FileTransferRefused):
                attempt()
        entries = {e["name"]: e["kind"] for e in s.list_files("/tmp")}
        assert entries["pw"] == "symlink"
        check = s.exec("import os\nprint(os.path.exists('/etc/rlmbox-planted'))")
    assert check.stdout == "False\n"


def test_a_transfer_over_the_cap_is_refused(runtimes: Runtimes) -> None:
    rt = runtimes(rules=FILE_RULES, limits={"file_transfer_mb": 1})
    with rt.session() as s:
        with pytest.raises(FileTransferRefused, match="file_transfer_mb"):
            s.write_file("/tmp/big", b"x" * (1024 * 1024 + 1))
        r = s.exec("open('/tmp/made', 'wb').write(b'y' * (2 * 1024 * 1024))")
        assert r.status == "ok", r.error
        with pytest.raises(FileTransferRefused, match="file_transfer_mb"):
            s.read_file("/tmp/made")
        assert s.exec("import os\nprint(os.path.exists('/tmp/big'))").stdout == "False\n"


def test_the_sandbox_file_size_limit_still_applies(runtimes: Runtimes) -> None:
    """A write past limits.file_size_mb fails in the sandbox; the session lives on."""
    rt = runtimes(rules=FILE_RULES, limits={"file_size_mb": 1, "file_transfer_mb": 4})
    with rt.session() as s:
        with pytest.raises(FileTransferRefused):
            s.write_file("/tmp/big", b"z" * (3 * 1024 * 1024))
        assert s.exec("print('alive')").stdout == "alive\n"


def test_a_policy_denial_is_refused_and_audited(runtimes: Runtimes) -> None:
    rt = runtimes(rules=[{"id": "permit-llm", "effect": "permit", "function": "llm_query"}])
    with rt.session() as s:
        with pytest.raises(PolicyDenied):
            s.write_file("/tmp/x", b"secret")
        with pytest.raises(PolicyDenied):
            s.read_file("/tmp/x")
        with pytest.raises(PolicyDenied):
            s.list_files("/tmp")
        assert s.exec("import os\nprint(os.path.exists('/tmp/x'))").stdout == "False\n"
    denied = events(rt, "file.transfer", outcome="denied")
    assert {e["function"] for e in denied} == {"files.write", "files.read", "files.list"}
    assert all(e["decision"] == "deny" and e["path"] for e in denied)
