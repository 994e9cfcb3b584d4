"""``rlmbox audit view``: the report of a real run shows the tree, cells, calls, budget and
verdict; everything the sandbox or the log says is escaped; large logs stay bounded."""

from __future__ import annotations

import json
import shutil
import stat
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rlmbox.audit.anchor import anchor_line
from rlmbox.audit.log import AuditLog
from rlmbox.audit.verify import verify_log
from rlmbox.audit.view.chart import MAX_POINTS
from rlmbox.audit.view.page import PageRequest
from rlmbox.audit.view.report import ViewOptions, render_report, render_tenant_session
from rlmbox.cli.main import main
from rlmbox.errors import AuditError

from .view_run import DENIED_RULE, MARKUP, RealRun

#: Every element the renderer writes; anything else came from the log.
RENDERER_TAGS = frozenset({
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "ul", "li", "a",
    "span", "section", "details", "summary", "pre", "code", "b", "svg", "rect", "line",
    "polyline", "text"})


class _Elements(HTMLParser):
    """Collects every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def assert_inert(html: str) -> _Elements:
    """Only the renderer's own elements, no event handler, no script, no external URL."""
    page = parse(html)
    tags = {tag for tag, _ in page.tags}
    assert tags <= RENDERER_TAGS, tags - RENDERER_TAGS
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert attrs.get("id") != "injected"
        for name in ("href", "src"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (tag, attrs)
    return page


def test_the_report_of_a_real_run_shows_tree_cells_calls_and_verdict(real_run: RealRun) -> None:
    report = render_report(real_run.audit_dir)
    html = report.html
    assert report.verification.ok
    assert report.verification.sealed
    assert "VERIFIED:" in html
    assert 'class="banner verified"' in html
    page = parse(html)
    tree = [attrs for tag, attrs in page.tags if tag == "li" and "data-depth" in attrs]
    assert [a["data-depth"] for a in tree] == ["0", "1"]
    assert html.index(real_run.root) < html.index(real_run.child)
    denied = [a for tag, a in page.tags if tag == "div" and a.get("data-decision") == "deny"]
    assert len(denied) == 1
    assert denied[0]["data-function"] == "llm_query"
    assert f"rules <code>{DENIED_RULE}</code>" in html
    assert "forbidden by rule forbid-big-model" in html
    statuses = [a["data-status"] for tag, a in page.tags if tag == "details" and "data-status" in a]
    assert statuses == ["ok", "error", "ok", "error", "interrupted", "ok"]
    assert 'data-event="limit.exceeded"' in html
    assert "cell_timeout_s" in html
    assert "(host-measured)" in html
    assert '<span class="kn">import</span>' in html   # highlighted Python, not plain text
    assert f'child <a href="#s1">{real_run.child}</a>' in html   # rlm_query links its child
    series = {a["data-series"] for tag, a in page.tags if tag == "polyline"}
    assert series == {"calls", "tokens", "cost"}


def test_markup_the_sandbox_printed_is_shown_as_text(real_run: RealRun) -> None:
    """The cell printed <script>, <img onerror> and closing tags to stdout, stderr and its
    error: the page holds them as text only, and its policy forbids scripts anyway."""
    html = render_report(real_run.audit_dir).html
    page = assert_inert(html)
    text = "".join(page.text)
    assert text.count(MARKUP) >= 3   # stdout, stderr, error (and the code, highlighted)
    assert "script-src" not in html
    assert "default-src 'none'" in html
    assert not any(tag == "script" for tag, _ in page.tags)


def test_markup_in_log_fields_is_escaped(logdir: Path) -> None:
    """A forged or hostile log: ids, rule ids, reasons, limits carry markup."""
    evil = '"><script>window.pwned=1</script><img src=x onerror=alert(1)>'
    with AuditLog(logdir) as log:
        log.append("session.create", session=evil, tenant=evil, policy=evil,
                   sandbox={"backend": evil, "runtime": evil})
        log.append("code.exec", session=evil, cell=evil, bodies={"code": evil})
        log.append("host.call", session=evil, cell=evil, call_id=1, function=evil,
                   decision="deny", rule_ids=[evil], reason=evil, outcome=evil,
                   budget_after={"tree": {"calls": 1}})
        log.append("limit.exceeded", session=evil, cell=evil, limit=evil, reason=evil)
        log.append("cell.result", session=evil, cell=evil, status=evil, error=evil,
                   bodies={"stdout": evil, "answer": evil})
        log.append("session.end", session=evil, reason=evil, death_reason=evil)
        log.append("session.create", session="child", parent=evil, depth=1)
    html = render_report(logdir).html
    assert_inert(html)
    assert "".join(parse(html).text).count(evil) >= 10


def test_a_tampered_log_shows_the_failure_banner(real_run: RealRun, tmp_path: Path) -> None:
    copy = tmp_path / "audit"
    shutil.copytree(real_run.audit_dir, copy)
    lines = (copy / "audit.jsonl").read_bytes().splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if b'"outcome":"denied"' in line)
    lines[target] = lines[target].replace(b'"decision":"deny"', b'"decision":"ok!!"')
    (copy / "audit.jsonl").write_bytes(b"".join(lines))
    html = render_report(copy).html
    assert 'class="banner failed"' in html
    assert f"FAIL: first bad record: seq {target + 1} (edited)" in html
    assert "VERIFIED" not in html
    assert html.count("after the first bad record: not proven") == 5   # cells from there on


def test_a_log_without_checkpoints_is_incomplete(real_run: RealRun, tmp_path: Path) -> None:
    copy = tmp_path / "audit"
    shutil.copytree(real_run.audit_dir, copy)
    (copy / "checkpoints.jsonl").unlink()
    html = render_report(copy).html
    assert 'class="banner incomplete"' in html
    assert "INCOMPLETE: records 1.." in html


def test_anchors_are_checked_when_given(real_run: RealRun) -> None:
    head = json.loads(anchor_line(verify_log(real_run.audit_dir)))
    held = render_report(real_run.audit_dir, ViewOptions(anchors={head["seq"]: head["head"]}))
    assert "off-host anchors: 1 held" in held.html
    assert "VERIFIED" in held.html
    forged = render_report(real_run.audit_dir, ViewOptions(anchors={head["seq"]: "0" * 64}))
    assert 'class="banner failed"' in forged.html
    assert "(rewritten)" in forged.html
    plain = render_report(real_run.audit_dir).html
    assert "off-host anchors: not given" in plain


def test_the_cli_writes_a_private_file_and_exits_by_the_verdict(
        real_run: RealRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    assert main(["audit", "view", str(real_run.audit_dir), "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "VERIFIED" in capsys.readouterr().out
    child = tmp_path / "child.html"
    assert main(["audit", "view", str(real_run.audit_dir), "--session", real_run.child,
                 "-o", str(child)]) == 0
    tree = [a for tag, a in parse(child.read_text()).tags if tag == "li" and "data-depth" in a]
    assert len(tree) == 1
    assert f"Session {real_run.child}" in child.read_text()
    assert main(["audit", "view", str(real_run.audit_dir), "--session", "nope",
                 "-o", str(tmp_path / "x.html")]) == 2
    assert "no session 'nope'" in capsys.readouterr().err
    copy = tmp_path / "unsealed"
    shutil.copytree(real_run.audit_dir, copy)
    (copy / "checkpoints.jsonl").unlink()
    assert main(["audit", "view", str(copy), "-o", str(tmp_path / "u.html")]) == 1


def test_a_tenant_sees_only_its_own_session_tree(logdir: Path) -> None:
    with AuditLog(logdir) as log:
        log.append("session.create", session="sa", tenant="alice")
        log.append("session.create", session="sa-child", parent="sa", depth=1, tenant="alice")
        log.append("session.create", session="bobs-root", tenant="bob")
        log.append("code.exec", session="bobs-root", cell="1", tenant="bob",
                   bodies={"code": "bob_secret = 1"})
        log.append("session.create", session="bobs-spy", parent="sa", depth=1, tenant="bob")
    html = render_tenant_session(logdir, "sa", "alice")
    assert "sa-child" in html
    assert "bobs-" not in html
    assert "bob_secret" not in html
    assert str(logdir) not in html
    with pytest.raises(AuditError, match="for this tenant"):
        render_tenant_session(logdir, "bobs-root", "alice")


def _large_log(logdir: Path, cells: int) -> None:
    """``cells`` cells with a call each; bodies repeat every 100 cells (the store keeps one
    copy of each, as it would), so writing the log takes seconds, not minutes of fsyncs."""
    with AuditLog(logdir, checkpoint_every=5000) as log:
        log.append("session.create", session="big", policy="p")
        for n in range(cells):
            cell = f"{n}-c"
            log.append("code.exec", session="big", cell=cell,
                       bodies={"code": f"x = llm_query('question {n % 100}')\nprint(x)\n"})
            log.append("host.call", session="big", cell=cell, call_id=n, function="llm_query",
                       decision="permit", rule_ids=["permit-llm"], outcome="ok",
                       tokens_in=3, tokens_out=4,
                       budget_after={"tree": {"calls": n + 1, "input_tokens": 3 * n,
                                              "output_tokens": 4 * n, "cost_usd": 0.0}})
            log.append("cell.result", session="big", cell=cell, status="ok", duration_s=0.01,
                       bodies={"stdout": f"answer {n % 100}\n"})
        log.append("session.end", session="big", reason="closed")


@pytest.mark.slow
def test_ten_thousand_cells_render_in_bounded_time_and_size(tmp_path: Path) -> None:
    logdir = tmp_path / "audit"
    _large_log(logdir, 10_000)
    started = time.monotonic()
    first = render_report(logdir).html
    elapsed = time.monotonic() - started
    assert elapsed < 30, elapsed   # measured: about 4 s here, under load from other work
    assert len(first.encode()) < 3_000_000, len(first.encode())
    page = parse(first)
    cells = [a for tag, a in page.tags if tag == "details" and "data-status" in a]
    assert len(cells) == 1000
    assert not any("open" in a for a in cells)
    assert "9000 more cell(s) of this session on page(s) 2, 3" in first
    points = next(a["points"] for tag, a in page.tags if tag == "polyline")
    assert points is not None
    assert len(points.split()) == MAX_POINTS
    last = render_report(logdir, ViewOptions(page=PageRequest(number=10))).html
    assert "cell 9999-c" in last
    assert "cell 8999-c" not in last
    assert "answer 99" in last
