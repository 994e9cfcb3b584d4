"""The enrichment steps are structlog processors: they run in a real structlog pipeline."""

from __future__ import annotations

from typing import Any

import structlog

from rlmbox.audit.canonical import GENESIS, record_digest
from rlmbox.audit.processors import (
    BODIES_KEY,
    Canonicalize,
    Chain,
    DigestBodies,
    RedactSecrets,
    Sealed,
    run_chain,
)
from rlmbox.audit.redact import Redactor


def test_redact_digest_canonicalize_run_inside_structlog() -> None:
    staged: dict[str, bytes] = {}

    def finish(logger: Any, method_name: str,
               event_dict: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (event_dict,), {}  # ReturnLogger hands back its single argument

    # Our processors take a plain dict; structlog types its slot as MutableMapping.
    processors: list[Any] = [RedactSecrets(Redactor(["s3cr3t-value"])),
                             DigestBodies(staged.__setitem__), Canonicalize(), finish]
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(), processors=processors,
        wrapper_class=structlog.BoundLogger)
    out = logger.info("code.exec", header="s3cr3t-value", n=(1, 2), **{BODIES_KEY: {"code": "x"}})
    event = out
    assert event["header"] == "[REDACTED]"
    assert event["n"] == [1, 2]
    assert event["code_bytes"] == 1
    assert staged[event["code_sha256"]] == b"x"


def test_chain_links_each_record_to_the_last() -> None:
    chain = Chain(0, GENESIS)
    first = run_chain([chain], {"event": "a"})
    second = run_chain([chain], {"event": "b"})
    assert isinstance(first, Sealed)
    assert isinstance(second, Sealed)
    assert (first.record["seq"], second.record["seq"]) == (1, 2)
    assert second.record["prev"] == record_digest(first.line) == first.digest
