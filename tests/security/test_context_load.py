"""Loading a ``variable`` context: what model code gets, and what it cannot do to it.

The context is staged as a file the sandbox maps read-only and decodes once into the
``context`` string (runtime/staging.py, agent/context_file.py). Each case runs on every
backend (on e2b only the arrival cases): the text arrives byte for byte (no newline
translation, any Unicode), and code that tries to write the staged file, through ``open``
or a shared writable mapping, fails and leaves it as the host wrote it.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from rlmbox.errors import PolicyError
from rlmbox.runtime.runtime import Runtime
from rlmbox.runtime.staging import RESERVE_FROM_CHARS

from .harness import skip_on_e2b

# \r\n and a lone \r are where a text-mode read used to translate; the rest is every
# UTF-8 length (1 to 4 bytes) and a NUL.
EXACT = "line one\r\nline two\rthree\n\x00 caf\u00e9 \u20ac \U0001f600 end"

# Where each backend mounts the stage, read-only (process: bwrap; docker: CONTEXT_MOUNT).
STAGES = ("/rlmbox/stage", "/rlmbox/context")

ATTEMPT_WRITES = """
import json, mmap, os
found, refused = [], []
STAGES = json.loads(__STAGES__)
for stage in STAGES:
    if not os.path.isdir(stage):
        continue
    for name in os.listdir(stage):
        path = os.path.join(stage, name)
        found.append(path)
        for attempt in ("open", "mmap"):
            try:
                if attempt == "open":
                    with open(path, "r+b") as handle:
                        handle.write(b"OWNED")
                else:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        with mmap.mmap(fd, 0, flags=mmap.MAP_SHARED,
                                       prot=mmap.PROT_READ | mmap.PROT_WRITE) as view:
                            view[:5] = b"OWNED"
                    finally:
                        os.close(fd)
            except (OSError, ValueError) as exc:
                refused.append(attempt + ": " + type(exc).__name__)
with open(found[0], "rb") as handle:
    head = handle.read(5)
print(json.dumps({"found": found, "refused": refused, "head": head.decode("latin-1")}))
""".replace("__STAGES__", repr(json.dumps(STAGES)))


@pytest.mark.parametrize("value", [EXACT, ""], ids=["mixed-newlines-unicode", "empty"])
def test_a_str_context_arrives_byte_for_byte(runtime: Runtime, value: str) -> None:
    with runtime.session(context=value) as session:
        result = session.exec("print(ascii(context)); print(type(context).__name__)")
    assert result.status == "ok", result.error
    assert result.stdout == f"{value!a}\nstr\n"


@pytest.mark.parametrize("unit", ["ascii-", "caf\u00e9-"], ids=["ascii", "not-ascii"])
def test_a_large_str_context_arrives_byte_for_byte(runtime: Runtime, unit: str) -> None:
    """Past ``RESERVE_FROM_CHARS`` an ASCII context is the staged file's mapped pages
    (agent/context_map.py); any other text is decoded. Both arrive whole, and the string
    behaves as any other."""
    value = (unit * (RESERVE_FROM_CHARS // len(unit) + 3))[:RESERVE_FROM_CHARS + 4097]
    digest = hashlib.sha256(value.encode()).hexdigest()
    with runtime.session(context=value) as session:
        result = session.exec(
            "import hashlib; print(len(context), hashlib.sha256(context.encode()).hexdigest(),"
            " hash(context) == hash(context.encode().decode()), context[-5:], context.isascii())")
    assert result.status == "ok", result.error
    assert result.stdout.split() == [str(len(value)), digest, "True", value[-5:],
                                     str(value.isascii())]


def test_a_json_context_arrives_whole(runtime: Runtime) -> None:
    value = {"doc": [EXACT, 1, None], "\u00e9": {"nested": True}}
    with runtime.session(context=value) as session:
        result = session.exec("import json; print(json.dumps(context, sort_keys=True))")
    assert result.status == "ok", result.error
    assert json.loads(result.stdout) == value


def test_model_code_cannot_write_the_staged_context(runtime: Runtime, backend: str) -> None:
    skip_on_e2b(backend, "the staged file is the VM's own upload, not the host's copy")
    original = "the host's copy " * 64
    with runtime.session(context=original) as session:
        attempt = session.exec(ATTEMPT_WRITES)
        after = session.exec(f"print(context == {original!r})")
    assert attempt.status == "ok", attempt.error
    report = json.loads(attempt.stdout)
    assert report["found"], "the staged context was not where the backend mounts it"
    assert len(report["refused"]) == 2 * len(report["found"]), report
    assert report["head"] == original[:5]
    assert after.stdout == "True\n"


def test_a_context_that_is_not_unicode_text_is_refused_clearly(runtime: Runtime) -> None:
    """A lone surrogate cannot be written as UTF-8: the caller gets a PolicyError naming
    where, not a bare UnicodeEncodeError from deep in staging (review s6e)."""
    with pytest.raises(PolicyError, match="lone surrogate at character 3"):
        runtime.session(context="abc\ud800def")


MAPPED_PAGES = """
import ctypes, os, sys
first = id(context) + sys.getsizeof("") - 1
where = ""
for line in open("/proc/self/maps").read().splitlines():
    fields = line.split()
    low, high = (int(x, 16) for x in fields[0].split("-"))
    if low <= first < high:
        where = fields[-1] if len(fields) == 6 else ""
libc = ctypes.CDLL(None, use_errno=True)
page = os.sysconf("SC_PAGE_SIZE")
made_writable = libc.mprotect(ctypes.c_void_p(first // page * page), ctypes.c_size_t(page),
                              3)
print(os.path.basename(where), made_writable, ctypes.get_errno())
"""


def test_a_large_ascii_context_is_the_staged_files_pages_and_stays_read_only(
        backend: str, runtime: Runtime) -> None:
    """The agent makes no copy of a large ASCII context where the sandbox's memory limit
    can count the mapping (process: its cgroup's limit is lowered by it; runsc: the
    sentry charges it): ``context``'s characters are the staged file's pages
    (agent/context_map.py). Code asking for them writable is refused, and dropping every
    name for the string frees nothing under later cells. Under runc and on e2b the host's
    page cache would not count, so the context is decoded into the sandbox's memory."""
    value = "a" * (RESERVE_FROM_CHARS + 3)
    with runtime.session(context=value) as session:
        mapped = session.exec(MAPPED_PAGES)
        dropped = session.exec("context += '!'\ndel context\nimport gc; gc.collect()\n"
                               "x = 'y' * 10_000_000")
        after = session.exec("print(len(x))")
    assert mapped.status == "ok", mapped.error
    if backend in ("process", "docker-runsc"):
        assert mapped.stdout.split() == ["context.txt", "-1", "13"]   # EACCES
    else:
        assert mapped.stdout.split() == ["0", "0"]   # no mapping of the staged file
    assert dropped.status == "ok", dropped.error
    assert after.stdout == "10000000\n"
