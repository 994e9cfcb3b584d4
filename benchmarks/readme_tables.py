"""README.md's benchmark tables, printed (or written into README.md) from one run's figures.

    python benchmarks/readme_tables.py [benchmarks/results/latest.json] [--write README.md]

The README carries no figure that is not in ``results/latest.md``: its tables are this
script's output from the ``latest.json`` the same ``run_all.sh`` run wrote, headed by that
run's commit and date. ``--write`` replaces what lies between the README's
``<!-- bench-tables:start -->`` and ``<!-- bench-tables:end -->`` markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from figures import fmt, load_records
from stack import BACKENDS, system_name
from targets import render as render_targets

Record = dict[str, object]
START, END = "<!-- bench-tables:start -->", "<!-- bench-tables:end -->"
# the beginnings of the table titles of bench_peers, bench_stack and bench_memory
PEERS, STACK, MEMORY = "peers", "full stack", "idle sessions"
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def value(records: list[Record], system: str, *measures: str, table: str = "") -> str:
    """The median of the last row of ``system`` whose measure begins with one of
    ``measures`` (in a table whose title begins with ``table``); "—" when the run has none."""
    found = [r for r in records if r["system"] == system and str(r["table"]).startswith(table)
             and str(r["measure"]).startswith(measures) and r["median"] is not None]
    if not found:
        return "—"
    row = found[-1]
    return fmt(float(str(row["median"])), str(row["unit"]))


def rlmbox_table(records: list[Record]) -> list[str]:
    lines = ["| rlmbox, full stack | start cold / warm pool | close | trivial cell, "
             "session / cell durability | distinct cell, cell durability | `llm_query`, "
             "cell durability | idle sessions per GiB |",
             "|---|---|---|---|---|---|---|"]
    for backend, runtime in BACKENDS:
        system = system_name(backend, runtime)
        session, cell = f"{system} (session durability)", f"{system} (cell durability)"
        def of(row_system: str, measure: str) -> str:
            return value(records, row_system, measure, table=STACK)

        lines.append(
            f"| {system} | {of(system, 'session start, cold')} / "
            f"{of(system, 'session start, warm')} | {of(system, 'session close')} | "
            f"{of(session, 'trivial cell')} / {of(cell, 'trivial cell')} | "
            f"{of(cell, 'distinct cell')} | {of(cell, 'llm_query')} | "
            f"{value(records, system, 'idle sessions per GiB', table=MEMORY)} |")
    return lines


def peers_table(records: list[Record]) -> list[str]:
    peers = sorted({str(r["system"]) for r in records
                    if str(r["table"]).startswith(PEERS) and r["system"] not in (
                        "floor", "docker")})
    lines = ["| peer (same run, same engine) | session start | close | trivial cell | "
             "`llm_query` |", "|---|---|---|---|---|"]
    for peer in peers:
        lines.append(
            f"| {peer} | {value(records, peer, 'session start', 'session open', table=PEERS)} | "
            f"{value(records, peer, 'session close', table=PEERS)} | "
            f"{value(records, peer, 'trivial cell', table=PEERS)} | "
            f"{value(records, peer, 'llm_query', table=PEERS)} |")
    return lines


def floors_line(records: list[Record]) -> str:
    table = next((r["table"] for r in records if str(r["table"]).startswith(STACK)), None)
    parts = [f"{r['measure']} {fmt(float(str(r['median'])))}" for r in records
             if r["table"] == table and r["system"] == "floor" and r["median"] is not None]
    return "Floors measured in the same run: " + "; ".join(parts) + "." if parts else ""


def tables(records: list[Record]) -> str:
    run = next((r for r in records if r["table"] == "run"), {})
    flag = " --quick" if run.get("mode") == "quick" else ""
    head = (f"From one `bash benchmarks/run_all.sh{flag}` run at {run.get('commit', '?')}"
            f" ({run.get('date', '?')}; `benchmarks/results/latest.md` has every row, its p99 "
            "and the machine). Medians; `session` durability fsyncs the audit log in the "
            "background, `cell` before each `exec` returns.")
    return "\n".join([head, "", *rlmbox_table(records), "", floors_line(records), "",
                      *peers_table(records), "", render_targets(records)])


def write(readme: Path, text: str) -> None:
    content = readme.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    before, rest = content.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS)
    parser.add_argument("--write", type=Path, metavar="README", help="replace the marked section")
    args = parser.parse_args()
    text = tables(load_records(args.results))
    if args.write:
        write(args.write, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
