"""Entry points: a report of a whole log (``rlmbox audit view``), or of one tenant's
session tree (for the daemon's ``GET /v1/sessions/{id}/view``).

Both verify the log first (chain, checkpoints, bodies, anchors when given) and read only
the log and its body store. Nothing else is consulted: the report shows what the log
proves, and says so when it proves less.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rlmbox.audit.bodies import BodyStore
from rlmbox.audit.files import BODIES
from rlmbox.audit.reader import iter_records, log_directory
from rlmbox.audit.verify import VerifyReport, verify_log
from rlmbox.audit.view.page import PageRequest, render_page
from rlmbox.audit.view.preview import BodyPreviews
from rlmbox.audit.view.trajectory import Session, build_trajectory
from rlmbox.audit.view.verdict import verdict_of
from rlmbox.errors import AuditError


@dataclass(frozen=True)
class ViewOptions:
    """What to check the log against and which part of it to show."""

    public_key: bytes | Path | None = None
    hmac_key: bytes | None = None
    anchors: Mapping[int, str] | None = None
    session: str | None = None
    page: PageRequest = field(default_factory=PageRequest)


@dataclass(frozen=True)
class Report:
    """The HTML and the verification it was built on (its banner says the same)."""

    html: str
    verification: VerifyReport


def render_report(path: Path, options: ViewOptions | None = None) -> Report:
    """The report for the log in ``path``: every session, or ``options.session``'s tree.

    Raises:
        AuditError: no log there, or ``options.session`` is not in it.
    """
    options = options or ViewOptions()
    return _render(path, options, tenant=None, whole_log=options.session is None)


def render_tenant_session(path: Path, session: str, tenant: str, *,
                          options: ViewOptions | None = None) -> str:
    """The report of ``session`` and its ``rlm_query`` descendants, from ``tenant``'s
    records only: the daemon's view route. The banner is the verdict on the whole log
    (the chain is shared by every tenant); no other tenant's record is shown.

    Raises:
        AuditError: ``session`` is not one of ``tenant``'s sessions in the log.
    """
    base = options or ViewOptions()
    scoped = ViewOptions(public_key=base.public_key, hmac_key=base.hmac_key,
                         anchors=base.anchors, session=session, page=base.page)
    return _render(path, scoped, tenant=tenant, whole_log=False).html


def write_report(path: Path, output: Path, options: ViewOptions | None = None) -> Report:
    """Render and write the report to ``output`` (mode 0600: it holds the log's contents)."""
    report = render_report(path, options)
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(report.html)
    except OSError as exc:
        raise AuditError(f"cannot write the report to {output}: {exc}") from exc
    return report


def _render(path: Path, options: ViewOptions, *, tenant: str | None,
            whole_log: bool) -> Report:
    directory = log_directory(path)
    verification = verify_log(directory, public_key=options.public_key,
                              hmac_key=options.hmac_key, anchors=options.anchors)
    records = iter_records(directory)
    if tenant is not None:
        records = (record for record in records if record.get("tenant") == tenant)
    trajectory = build_trajectory(records)
    if whole_log:
        scope = [pair for root in trajectory.roots for pair in trajectory.walk(root)]
        title = "rlmbox audit report"
    else:
        if options.session not in trajectory.sessions:
            raise AuditError(f"no session {options.session!r} in the audit log"
                             + (" for this tenant" if tenant is not None else ""))
        scope = trajectory.walk(str(options.session))
        title = f"rlmbox audit report: session {options.session}"
    bodies = BodyPreviews(BodyStore(directory / BODIES))
    html = render_page(trajectory, scope, verdict_of(verification,
                                                     anchors_given=options.anchors is not None),
                       bodies, page=options.page, title=title,
                       subtitle=f"{directory if tenant is None else f'tenant {tenant}'} · "
                                f"{trajectory.records} record(s) read · {_sessions_note(scope)}")
    return Report(html, verification)


def _sessions_note(scope: list[tuple[Session, int]]) -> str:
    roots = sum(level == 0 for _, level in scope)
    return f"{len(scope)} session(s) in {roots} tree(s)"
