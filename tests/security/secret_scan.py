"""A cell that searches everything model code can read for secrets it is never given.

The cell gets, for each secret, a public prefix, the total length and a SHA-256 digest,
and reports candidates whose digest matches, so the search cannot plant what it looks for.
It reads the environment, every visible /proc/*/environ and cmdline, and the files under
/tmp and /rlmbox; with ``memory=True`` also every readable region of its own process
(/proc/self/mem, which holds every Python object the agent has). It prints
``{"found": [[target index, where], ...], "regions": memory regions read}``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_FILES = r"""
import hashlib, json, os
TARGETS = json.loads(TARGETS_JSON)   # [[prefix, total_length, sha256], ...]
found = []
def scan(where, data):
    for index, (prefix, total, digest) in enumerate(TARGETS):
        p = prefix.encode()
        start = data.find(p)
        while start != -1:
            if hashlib.sha256(data[start:start + total]).hexdigest() == digest:
                found.append([index, where])
            start = data.find(p, start + 1)
def read(path, limit=1 << 22):
    try:
        with open(path, 'rb') as handle:
            return handle.read(limit)
    except OSError:
        return b''
scan('environ', '\n'.join('%s=%s' % kv for kv in os.environ.items()).encode())
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self']:
    for name in ('environ', 'cmdline'):
        scan('/proc/%s/%s' % (pid, name), read('/proc/%s/%s' % (pid, name)))
for root in ('/tmp', '/rlmbox'):
    for dirpath, _, files in os.walk(root):
        for name in files:
            scan(os.path.join(dirpath, name), read(os.path.join(dirpath, name)))
regions = 0
"""

_MEMORY = r"""
with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', buffering=0) as mem:
    for line in maps:
        fields = line.split()
        if 'r' not in fields[1] or (len(fields) > 5 and fields[5] in ('[vvar]', '[vsyscall]')):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        try:
            mem.seek(lo)
            scan('memory ' + line.strip(), mem.read(hi - lo))
            regions += 1
        except (OSError, OverflowError, ValueError):
            pass
"""

_REPORT = "print(json.dumps({'found': found, 'regions': regions}))\n"


def target(secret: str, public: int) -> list[Any]:
    """What the cell may know of ``secret``: its first ``public`` characters, its length
    and its digest."""
    return [secret[:public], len(secret), hashlib.sha256(secret.encode()).hexdigest()]


def scan_cell(targets: list[list[Any]], *, memory: bool) -> str:
    """The cell's source for these targets (built with :func:`target`)."""
    code = _FILES + (_MEMORY if memory else "") + _REPORT
    return code.replace("TARGETS_JSON", repr(json.dumps(targets)))
