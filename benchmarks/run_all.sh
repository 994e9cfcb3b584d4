#!/usr/bin/env bash
# Every rlmbox benchmark in one run, on this machine, with the machine described.
#
#   bash benchmarks/run_all.sh [--quick]
#
# Runs every bench_*.py in sequence (each bounded by a timeout, a failing one reported and
# the rest still run), then the target table (targets.py), and writes everything to stdout
# and to benchmarks/results/latest.md; every row is also recorded in results/latest.json,
# from which `python benchmarks/readme_tables.py --write README.md` makes README's tables.
# --quick takes fewer repetitions (2-3 minutes here; the full run under 10). Environment:
# RLMBOX_PYTHON (the venv python; default .venv/bin/python), RLMBOX_BENCH_TIMEOUT (seconds
# per benchmark; 300). Benchmarks print numbers; they assert nothing about speed.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=false
for arg in "$@"; do
    case "$arg" in
        --quick) quick=true ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

PY="${RLMBOX_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
LIMIT="${RLMBOX_BENCH_TIMEOUT:-300}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this tree's rlmbox, not an installed one

if $quick; then
    mode=quick
    benches=("bench_stack.py --quick" "bench_memory.py --sessions 5"
             "bench_context.py --sizes-mb 100 --reps 2" "bench_docker.py --rounds 3 --trips 200"
             "bench_e2b.py --sessions 2 --cells 20"
             "bench_policy.py --n 5000" "bench_audit.py --events 10000 --calls 500"
             "bench_adapters.py --cells 50 --setups 2" "bench_daemon.py --sessions 3 --cells 20"
             "bench_daemon_tenants.py --cells 50 --rounds 3" "bench_peers.py --quick"
             "bench_lm_caching.py")
else
    mode=full
    benches=("bench_stack.py" "bench_memory.py --sessions 20"
             "bench_context.py --sizes-mb 100,1000 --reps 3" "bench_docker.py" "bench_e2b.py"
             "bench_policy.py"
             "bench_audit.py" "bench_adapters.py" "bench_daemon.py" "bench_daemon_tenants.py"
             "bench_peers.py" "bench_lm_caching.py" "bench_ray.py")
fi
# these print markdown tables (figures.Table); the others print aligned text
markdown=" bench_stack.py bench_memory.py bench_context.py bench_docker.py bench_e2b.py bench_audit.py bench_adapters.py bench_daemon.py bench_peers.py "

out=benchmarks/results/latest.md
results=benchmarks/results/latest.json
mkdir -p "$(dirname "$out")"
partial="$out.partial"
export RLMBOX_BENCH_RESULTS="$results.partial"
: >"$RLMBOX_BENCH_RESULTS"
errors="$(mktemp)"
trap 'rm -f "$errors" "$partial" "$RLMBOX_BENCH_RESULTS"' EXIT

report() {
    local started=$SECONDS failed=0
    echo "# rlmbox benchmarks ($mode run)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- command: bash benchmarks/run_all.sh$($quick && echo ' --quick')"
    "$PY" benchmarks/machine.py | sed 's/^/- /'
    printf '{"table": "run", "system": "run", "measure": "run", "median": null, "mode": "%s", "commit": "%s", "date": "%s"}\n' \
        "$mode" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$RLMBOX_BENCH_RESULTS"
    for bench in "${benches[@]}"; do
        local script="${bench%% *}" t0=$SECONDS rc=0
        echo
        echo "## benchmarks/$bench"
        echo
        if [[ "$markdown" == *" $script "* ]]; then
            # shellcheck disable=SC2086 # the arguments are split on purpose
            timeout "$LIMIT" "$PY" benchmarks/$bench 2>"$errors" || rc=$?
        else
            echo '```'
            # shellcheck disable=SC2086
            timeout "$LIMIT" "$PY" benchmarks/$bench 2>"$errors" || rc=$?
            echo '```'
        fi
        if [ "$rc" -ne 0 ]; then
            failed=$((failed + 1))
            echo
            echo "**exit $rc$([ "$rc" -eq 124 ] && echo " (timed out after ${LIMIT} s)")**; last lines of stderr:"
            echo '```'
            tail -n 15 "$errors"
            echo '```'
        fi
        echo
        echo "_${script}: $((SECONDS - t0)) s_"
    done
    echo
    "$PY" benchmarks/targets.py "$RLMBOX_BENCH_RESULTS"
    echo
    echo "Total: $((SECONDS - started)) s; $failed of ${#benches[@]} benchmarks failed."
}

report | tee "$partial"
mv "$partial" "$out"
mv "$RLMBOX_BENCH_RESULTS" "$results"
echo "written to $out and $results (README tables: python benchmarks/readme_tables.py)" >&2
