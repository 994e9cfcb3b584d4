"""The enrichment chain an event passes through: redact -> digest bodies -> canonicalize -> chain.

Each step is a structlog-style processor: settings in ``__init__``, work in
``__call__(logger, method_name, event_dict)``. We run the chain with our own ten-line loop
(``run_chain``) rather than structlog's global configuration, because a daemon needs one chain
per log instance and the final step must run under the log's lock; the signature still lets
the first three steps be dropped into a structlog pipeline.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from rlmbox.audit.canonical import normalize, normalize_fresh, record_digest, rfc3339_now
from rlmbox.audit.fast_canonical import fast_canonical_bytes
from rlmbox.audit.redact import Redactor
from rlmbox.errors import AuditRecordInvalid

EventDict = dict[str, Any]
Processor = Callable[[Any, str, EventDict], Any]

#: Key under which ``AuditLog.append`` passes bodies to ``DigestBodies`` (popped there).
BODIES_KEY = "_bodies"
#: Fields ``Chain`` stamps on every record.
CHAIN_FIELDS = ("seq", "ts", "prev")
#: Fields the chain owns; callers may not set them.
RESERVED = frozenset({*CHAIN_FIELDS, "bodies", BODIES_KEY})


class Sealed(NamedTuple):
    """A chained record: the dict, its canonical line (no newline) and that line's SHA-256.

    A named tuple: immutable like a frozen dataclass, at a third of its cost to build.
    """

    record: EventDict
    line: bytes
    digest: str


def run_chain(processors: Sequence[Processor], event_dict: EventDict) -> Any:
    """Pass ``event_dict`` through ``processors`` in order, like structlog's ``_process_event``."""
    result: Any = event_dict
    for processor in processors:
        result = processor(None, "append", result)
    return result


class RedactSecrets:
    """Replaces configured secrets and credential patterns in every string and body.

    A body a pattern cut keeps its evidence in the record: ``<name>_original_sha256`` and
    ``<name>_redactions`` (the byte spans cut and why), so the sandbox cannot erase data
    from the log by making it look like a credential.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        bodies = event_dict.pop(BODIES_KEY, None)
        # The record's own copy first (the caller's thread may still change its lists and
        # dicts), then the pre-check and redaction of that copy: what is checked is written.
        own = _own_copy(event_dict)
        out: EventDict = self._redactor.value(own) if self._redactor.needs(own) else own
        _HANDOFF.copied = out   # Canonicalize need not copy it again
        if bodies:
            redacted: dict[str, bytes] = {}
            for raw_name, body in bodies.items():
                name = self._redactor.text(raw_name)
                result = self._redactor.body(body)
                redacted[name] = result.data
                if result.original_sha256 is not None:
                    for field in (f"{name}_original_sha256", f"{name}_redactions"):
                        if field in out:
                            raise AuditRecordInvalid(
                                f"body {name!r} collides with attribute {field!r}")
                    out[f"{name}_original_sha256"] = result.original_sha256
                    out[f"{name}_redactions"] = list(result.spans)
            out[BODIES_KEY] = redacted
        return out


#: Per thread, the last record ``RedactSecrets`` returned: a copy already normalized, whose
#: lists and dicts no caller holds, which ``Canonicalize`` may take as it is (the copy cost
#: 3 us of a host-call record's append; made twice, it would be paid twice).
_HANDOFF = threading.local()


def _own_copy(event_dict: EventDict) -> EventDict:
    """``event_dict`` with every list and dict in it copied (and checked) by ``normalize``."""
    if type(event_dict) is dict:
        return normalize_fresh(event_dict)
    normalized: EventDict = normalize(event_dict)
    return normalized


class DigestBodies:
    """Moves large bodies to the content-addressed store; the event keeps digest and size.

    ``stage`` receives ``(sha256_hex, data)`` and must make the body durable no later than
    the event that names it.
    """

    def __init__(self, stage: Callable[[str, bytes], None]) -> None:
        self._stage = stage

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        bodies: Mapping[str, str | bytes] | None = event_dict.pop(BODIES_KEY, None)
        if not bodies:
            return event_dict
        names = []
        for name, body in bodies.items():
            data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
            digest = hashlib.sha256(data).hexdigest()
            for field in (f"{name}_sha256", f"{name}_bytes"):
                if field in event_dict:
                    raise AuditRecordInvalid(f"body {name!r} collides with attribute {field!r}")
            event_dict[f"{name}_sha256"] = digest
            event_dict[f"{name}_bytes"] = len(data)
            names.append(name)
            self._stage(digest, data)
        event_dict["bodies"] = sorted(names)
        return event_dict


class Canonicalize:
    """Brings every value into the JSON data model, refusing what cannot be recorded.

    Runs before the chain so that a bad attribute is refused before a ``seq`` is taken.
    The top level is checked in place: the log built that dict for this record, so a
    scalar in it (a string, integer, boolean, ``None`` or finite float) stays as it is.
    Every other value goes through ``normalize``, which copies lists and dicts because
    they belong to the caller, whose thread could change them before the chain serialises
    the record (a NaN written as ``null``: tests/security/test_review_s5d.py).
    """

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        copied: EventDict | None = getattr(_HANDOFF, "copied", None)
        if copied is event_dict:
            _HANDOFF.copied = None   # RedactSecrets' own copy, plus DigestBodies' scalars
            return event_dict
        if type(event_dict) is dict:
            return normalize_fresh(event_dict)
        normalized: EventDict = normalize(event_dict)
        return normalized


class Chain:
    """Stamps ``seq``, ``ts`` and ``prev``, serialises canonically and hashes.

    Takes ``Canonicalize``'s output: the fast serialiser relies on values being normalized
    (finite floats only).

    The chain as a standalone processor (tests, tools); ``AuditLog`` keeps no chain of its
    own: it seals each record after its writer's queued head (``seal_after``), set in the
    step that queues. Not thread-safe.
    """

    def __init__(self, last_seq: int, last_digest: str) -> None:
        self.seq = last_seq
        self.head = last_digest

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> Sealed:
        sealed = seal_after(event_dict, self.seq, self.head)
        self.seq, self.head = sealed.record["seq"], sealed.digest
        return sealed


def seal_after(event_dict: EventDict, last_seq: int, last_digest: str) -> Sealed:
    """``event_dict`` as the record after ``(last_seq, last_digest)``: stamped with ``seq``,
    ``ts`` and ``prev``, serialised canonically and hashed."""
    event_dict["seq"] = last_seq + 1
    event_dict["ts"] = rfc3339_now()
    event_dict["prev"] = last_digest
    line = fast_canonical_bytes(event_dict)
    if line.find(b"\n") != -1:  # impossible for canonical JSON; guards the framing
        raise AuditRecordInvalid("canonical record contains a newline")
    return Sealed(event_dict, line, record_digest(line))
