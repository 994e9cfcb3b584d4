"""The report's HTML: banner, session tree, budget charts, then each session's timeline.

The page carries no script at all and a Content-Security-Policy that forbids scripts,
fetches and frames, so even a value that escaped the escaping could not run or call out.
Collapsing is ``<details>``; the tree is links to anchors this module numbers itself (no
id taken from the log reaches an attribute). Cells are paginated across the report:
``PageRequest.size`` cells per page, in tree order; the tree, banner and charts always
cover everything in scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rlmbox.audit.view.chart import budget_chart, budget_points
from rlmbox.audit.view.escape import CODE_CLASS, code_styles, esc, python_html
from rlmbox.audit.view.preview import BodyPreviews
from rlmbox.audit.view.trajectory import (
    Call,
    Cell,
    Session,
    Trajectory,
    body_digest,
    int_field,
    number_field,
    text_field,
)
from rlmbox.audit.view.verdict import Verdict

#: No script, no fetch, no frame, no form: the report is inert whatever it contains.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
#: Cells open by default when a page holds at most this many.
OPEN_CELLS = 50
#: Host calls listed per cell; the rest are counted.
MAX_CALLS_SHOWN = 200
_MAX_INDENT = 30
_NO_SESSION = Session("", None, 0, None)

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:16px;
color:#1f2328}
h1{font-size:20px}h2{font-size:17px;margin:28px 0 6px;border-top:1px solid #d0d7de;
padding-top:12px}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;border:2px solid}
.banner.verified{background:#dafbe1;border-color:#1a7f37}
.banner.incomplete{background:#fff8c5;border-color:#9a6700}
.banner.failed{background:#ffebe9;border-color:#cf222e}
.banner .headline{font-weight:600}.banner ul{margin:4px 0 0 18px;padding:0}
.tree{list-style:none;padding:0}.tree li{margin:2px 0}
.badge{display:inline-block;padding:0 6px;border-radius:10px;font-size:12px;
background:#eaeef2;margin-right:4px}
.badge.ok,.badge.permit{background:#dafbe1}.badge.error,.badge.deny,.badge.killed,
.badge.failed,.badge.unverified{background:#ffebe9;color:#82071e}
.badge.interrupted,.badge.stop,.badge.open{background:#fff8c5}
details.cell{border:1px solid #d0d7de;border-radius:6px;margin:6px 0;padding:4px 8px}
details.cell>summary{cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:6px;margin:4px 0;
border-radius:4px;font:12px/1.4 ui-monospace,monospace}
.call{border-left:3px solid #1f6feb;padding:2px 8px;margin:4px 0}
.call.deny{border-left-color:#cf222e;background:#fff5f5}
.stop-event{border-left:3px solid #9a6700;padding:2px 8px;margin:4px 0;background:#fffbe6}
.label{color:#57606a;font-size:12px}.note{color:#9a6700;font-size:12px}
.more{color:#57606a;font-style:italic}
"""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which page of cells to render and how many cells a page holds."""

    number: int = 1
    size: int = 1000


class _Renderer:
    def __init__(self, trajectory: Trajectory, scope: list[tuple[Session, int]],
                 verdict: Verdict, bodies: BodyPreviews, page: PageRequest) -> None:
        self.trajectory, self.scope, self.verdict, self.bodies = trajectory, scope, verdict, bodies
        self.anchor = {session.session_id: f"s{n}" for n, (session, _) in enumerate(scope)}
        self.cell_index: dict[int, int] = {}   # id(cell) -> position in the report
        for session, _ in scope:
            for cell in session.cells:
                self.cell_index[id(cell)] = len(self.cell_index)
        self.page = page
        self.first = (page.number - 1) * page.size
        self.last = self.first + page.size   # exclusive
        shown = max(0, min(self.last, len(self.cell_index)) - self.first)
        self.open_cells = shown <= OPEN_CELLS

    # --- the whole page -------------------------------------------------------------------

    def document(self, title: str, subtitle: str) -> str:
        pages = max(1, -(-len(self.cell_index) // self.page.size))
        parts = [
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            '<meta name="referrer" content="no-referrer">',
            f"<title>{esc(title)}</title><style>{_STYLE}{code_styles()}</style></head><body>",
            f"<h1>{esc(title)}</h1><p class=\"label\">{esc(subtitle)}</p>",
            self.banner(),
            f'<p class="label">{len(self.scope)} session(s), {len(self.cell_index)} cell(s); '
            f"page {self.page.number} of {pages} ({self.page.size} cells a page"
            + (", --page N for the others" if pages > 1 else "") + ")</p>",
            "<h2>Recursion tree</h2>", self.tree(),
        ]
        parts += [self.session(session, level) for session, level in self.scope]
        parts.append("</body></html>\n")
        return "".join(parts)

    def banner(self) -> str:
        details = "".join(f"<li>{esc(line)}</li>" for line in self.verdict.details)
        return (f'<div class="banner {self.verdict.level}" id="verdict">'
                f'<div class="headline">{esc(self.verdict.headline)}</div>'
                f"<ul>{details}</ul></div>")

    def tree(self) -> str:
        items = []
        for session, level in self.scope:
            indent = min(level, _MAX_INDENT) * 1.5
            items.append(f'<li style="margin-left:{indent}em" data-depth="{level}">'
                         f'<a href="#{self.anchor[session.session_id]}">{esc(session.session_id)}'
                         f"</a> {self.session_badges(session)}</li>")
        return f'<ul class="tree">{"".join(items)}</ul>'

    def session_badges(self, session: Session) -> str:
        cells = session.cells
        calls = [call for cell in cells for call in cell.calls]
        denied = sum(call.denied for call in calls)
        stops = sum(len(cell.stops) for cell in cells) + sum(
            isinstance(entry, dict) for entry in session.entries)
        ended = session.ended or {}
        death = text_field(ended, "death_reason")
        parts = [f'<span class="badge">{len(cells)} cell(s)</span>',
                 f'<span class="badge">{len(calls)} call(s)</span>']
        if denied:
            parts.append(f'<span class="badge deny">{denied} denied</span>')
        if stops:
            parts.append(f'<span class="badge stop">{stops} limit/kill</span>')
        if death:
            parts.append(f'<span class="badge killed">died: {esc(death)}</span>')
        elif session.ended is None:
            parts.append('<span class="badge open">no session.end</span>')
        return "".join(parts)

    # --- one session ----------------------------------------------------------------------

    def session(self, session: Session, level: int) -> str:
        created = session.created or {}
        raw_sandbox = created.get("sandbox")
        sandbox: dict[str, Any] = raw_sandbox if isinstance(raw_sandbox, dict) else {}
        facts = [f"depth {session.depth}"]
        if session.parent:
            anchor = self.anchor.get(session.parent)
            parent = esc(session.parent)
            facts.append(f'parent <a href="#{anchor}">{parent}</a>' if anchor
                         else f"parent {parent}")
        for label, value in (("tenant", session.tenant), ("policy", text_field(created, "policy")),
                             ("backend", text_field(sandbox, "backend")),
                             ("runtime", text_field(sandbox, "runtime"))):
            if value:
                facts.append(f"{label} {esc(value)}")
        parts = [f'<section class="session" id="{self.anchor[session.session_id]}">'
                 f"<h2>Session {esc(session.session_id)}</h2>"
                 f'<p class="label">{" · ".join(facts)}</p>']
        if level == 0:
            parts.append(self.chart(session))
        hidden: list[int] = []
        for entry in session.entries:
            if isinstance(entry, Cell):
                position = self.cell_index[id(entry)]
                if self.first <= position < self.last:
                    parts.append(self.cell(entry, position))
                else:
                    hidden.append(position)
            elif isinstance(entry, Call):
                parts.append(self.call(entry, root_step=True))
            else:
                parts.append(self.stop(entry))
        if hidden:
            pages = sorted({position // self.page.size + 1 for position in hidden})
            parts.append(f'<p class="more">{len(hidden)} more cell(s) of this session on '
                         f"page(s) {', '.join(map(str, pages[:20]))}"
                         f"{' …' if len(pages) > 20 else ''} (--page N)</p>")
        parts.append(self.ending(session))
        parts.append("</section>")
        return "".join(parts)

    def chart(self, root: Session) -> str:
        records: list[dict[str, Any]] = []
        for session, _ in self.trajectory.walk(root.session_id):
            for entry in session.entries:
                if isinstance(entry, Cell):
                    records += [c.outcome for c in entry.calls if c.outcome] + entry.stops
                elif isinstance(entry, Call) and entry.outcome:
                    records.append(entry.outcome)
                elif isinstance(entry, dict):
                    records.append(entry)
        records.sort(key=lambda record: int_field(record, "seq") or 0)
        svg = budget_chart(*budget_points(records))
        if not svg:
            return ""
        return ('<div class="budget"><div class="label">Budget use of this tree over time '
                "(ledger totals after each host call; red: a budget refused)</div>"
                f"{svg}</div>")

    def ending(self, session: Session) -> str:
        if session.ended is None:
            return ('<p class="note">No session.end record: the session was still open, '
                    "or its process died, when the log was read.</p>")
        ended = session.ended
        facts = [f"ended: {esc(text_field(ended, 'reason') or '?')}"]
        death = text_field(ended, "death_reason")
        if death:
            facts.append(f'<span class="badge killed">death: {esc(death)}</span>')
        duration = number_field(ended, "duration_s")
        if duration is not None:
            facts.append(f"{duration:.3f} s (host-measured)")
        return f'<p class="label">{" · ".join(facts)}</p>'

    # --- cells, calls, stops --------------------------------------------------------------

    def cell(self, cell: Cell, position: int) -> str:
        result = cell.result or {}
        status = text_field(result, "status") or ("rejected" if any(
            stop.get("event") == "code.rejected" for stop in cell.stops) else "no result")
        badge = status if status in ("ok", "error", "interrupted", "killed") else "stop"
        summary = [f'<span class="badge {badge}">{esc(status)}</span>',
                   f"cell {esc(cell.cell_id)}"]
        duration = number_field(result, "duration_s")
        if duration is not None:
            summary.append(f"{duration:.3f} s (host-measured)")
        if cell.calls:
            denied = sum(call.denied for call in cell.calls)
            summary.append(f"{len(cell.calls)} call(s)"
                           + (f', <span class="badge deny">{denied} denied</span>'
                              if denied else ""))
        if cell.stops:
            summary.append(f'<span class="badge stop">{len(cell.stops)} limit/kill</span>')
        summary.append(f'<span class="label">seq {cell.seq}..{cell.last_seq}</span>')
        if self.unverified(cell.last_seq):
            summary.append('<span class="badge unverified">after the first bad record: '
                           "not proven</span>")
        parts = [f'<details class="cell" id="c{position}" data-status="{badge}"'
                 f'{" open" if self.open_cells else ""}><summary>{" · ".join(summary)}</summary>']
        code = self.bodies.preview(body_digest(cell.exec_record or {}, "code"))
        if code is not None:
            parts.append(self.body_note(code.note, code.altered))
            parts.append(f'<pre class="{CODE_CLASS}">{python_html(code.text)}</pre>')
        for call in cell.calls[:MAX_CALLS_SHOWN]:
            parts.append(self.call(call))
        if len(cell.calls) > MAX_CALLS_SHOWN:
            parts.append(f'<p class="more">{len(cell.calls) - MAX_CALLS_SHOWN} more call(s) '
                         "(rlmbox audit show --event host.call lists them)</p>")
        parts += [self.stop(stop) for stop in cell.stops]
        for name in ("stdout", "stderr"):
            parts.append(self.body_block(result, name, f"{name} (reported by the sandbox)"))
        error = text_field(result, "error")
        if error:
            parts.append(f'<div class="label">error (reported by the sandbox)</div>'
                         f'<pre class="error">{esc(error)}</pre>')
        parts.append(self.body_block(result, "answer", "answer (reported by the sandbox)"))
        dropped = result.get("dropped")
        if isinstance(dropped, dict) and any(
                isinstance(v, int) and v > 0 for v in dropped.values()):
            parts.append(f'<p class="note">output cut by the host: dropped bytes '
                         f"{esc(json.dumps(dropped, sort_keys=True))}</p>")
        parts.append("</details>")
        return "".join(parts)

    def body_block(self, record: dict[str, Any], name: str, label: str) -> str:
        preview = self.bodies.preview(body_digest(record, name))
        if preview is None or (not preview.text and not preview.note):
            return ""
        return (f'<div class="label">{esc(label)}</div>'
                f"{self.body_note(preview.note, preview.altered)}"
                f'<pre class="{esc(name)}">{esc(preview.text)}</pre>')

    @staticmethod
    def body_note(note: str, altered: bool) -> str:
        if not note:
            return ""
        return (f'<p class="note">{"<b>" if altered else ""}{esc(note)}'
                f'{"</b>" if altered else ""}</p>')

    def call(self, call: Call, *, root_step: bool = False) -> str:
        record = call.record
        decision = text_field(record, "decision")
        outcome = text_field(record, "outcome") or ("no outcome recorded: it may have run"
                                                   if call.outcome is None else "?")
        kind = "deny" if call.denied else "permit"
        label = decision or ("root model step" if root_step else "-")
        head = [f'<span class="badge {kind}">{esc(label)}</span>',
                f"<code>{esc(call.function)}</code>"]
        rules = record.get("rule_ids")
        if isinstance(rules, list) and rules:
            head.append("rules " + ", ".join(f"<code>{esc(rule)}</code>" for rule in rules))
        head.append(f"outcome {esc(outcome)}")
        for key, label in (("reason", "reason"), ("error", "error"), ("model", "model"),
                           ("mode", "mode")):
            value = text_field(record, key)
            if value:
                head.append(f"{label}: {esc(value)}")
        numbers = []
        for key, unit in (("tokens_in", "tokens in"), ("tokens_out", "tokens out"),
                          ("cost_usd", "USD"), ("latency_ms", "ms")):
            amount = number_field(record, key)
            if amount is not None:
                numbers.append(f"{amount:g} {unit}")
        if numbers:
            head.append(f'<span class="label">{", ".join(numbers)}</span>')
        head += [f'child <a href="#{self.anchor[child]}">{esc(child)}</a>'
                 for child in self.children_of(call)]
        parts = [f'<div class="call {kind}" data-function="{esc(call.function)}" '
                 f'data-decision="{esc(decision or "")}">{" · ".join(head)}']
        args = self.bodies.preview(body_digest(call.start or {}, "args")
                                   or body_digest(call.outcome or {}, "args"))
        completion = self.bodies.preview(body_digest(call.outcome or {}, "completion"))
        for label, preview in (("arguments", args), ("completion", completion)):
            if preview is not None:
                parts.append(f"<details><summary>{label}</summary>"
                             f"{self.body_note(preview.note, preview.altered)}"
                             f"<pre>{esc(preview.text)}</pre></details>")
        parts.append("</div>")
        return "".join(parts)

    def children_of(self, call: Call) -> list[str]:
        """The sessions an ``rlm_query`` call started: children of the caller's session
        created between the call's start and its outcome, when both are in view."""
        start, outcome = call.start, call.outcome
        if not call.function.startswith("rlm_query") or start is None or outcome is None:
            return []
        caller = text_field(start, "session")
        first, last = int_field(start, "seq") or 0, int_field(outcome, "seq") or 0
        found = []
        for child_id in self.trajectory.sessions.get(caller or "", _NO_SESSION).children:
            child = self.trajectory.sessions[child_id]
            if child_id in self.anchor and first < (int_field(child.created or {}, "seq")
                                                    or 0) < last:
                found.append(child_id)
        return found

    def stop(self, record: dict[str, Any]) -> str:
        event = text_field(record, "event") or "?"
        facts = [f"<b>{esc(event)}</b>"]
        for key in ("limit", "budget", "used", "value", "reason", "missing"):
            if key in record:
                facts.append(f"{key}: {esc(json.dumps(record[key], ensure_ascii=False))}")
        return f'<div class="stop-event" data-event="{esc(event)}">{" · ".join(facts)}</div>'

    def unverified(self, last_seq: int) -> bool:
        first_bad = self.verdict.first_bad_seq
        return first_bad is not None and last_seq >= first_bad


def render_page(trajectory: Trajectory, scope: list[tuple[Session, int]], verdict: Verdict,
                bodies: BodyPreviews, *, page: PageRequest, title: str, subtitle: str) -> str:
    """The whole HTML document for the sessions in ``scope`` (from ``Trajectory.walk``)."""
    return _Renderer(trajectory, scope, verdict, bodies, page).document(title, subtitle)
