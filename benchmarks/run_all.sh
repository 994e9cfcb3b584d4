#!/usr/bin/env bash
# Every rlmbox benchmark in one run, on this machine, with the machine described.
#
#   bash benchmarks/run_all.sh [--quick]
#
# Runs bench_core, bench_docker, bench_policy, bench_audit, bench_adapters, bench_daemon,
# bench_daemon_tenants, bench_lm_caching and bench_peers in sequence (each bounded by a timeout, a failing one reported and the rest
# still run), and writes everything to stdout and to benchmarks/results/latest.md. --quick
# takes fewer repetitions (about 1.5 minutes here; the full run about 3). Environment:
# RLMBOX_PYTHON (the venv python; default .venv/bin/python), RLMBOX_BENCH_TIMEOUT (seconds
# per benchmark; 300).
# Benchmarks print numbers; they assert nothing about speed.
set -uo pipefail
cd "$(dirname "$0")/.."

quick=false
for arg in "$@"; do
    case "$arg" in
        --quick) quick=true ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "run_all.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

PY="${RLMBOX_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
LIMIT="${RLMBOX_BENCH_TIMEOUT:-300}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this tree's rlmbox, not an installed one

if $quick; then
    mode=quick
    benches=("bench_core.py --quick" "bench_docker.py --rounds 3 --trips 200"
             "bench_policy.py --n 5000" "bench_audit.py --events 10000"
             "bench_adapters.py --cells 50" "bench_daemon.py --sessions 3 --cells 20"
             "bench_daemon_tenants.py --cells 50 --rounds 3" "bench_peers.py --quick" "bench_lm_caching.py")
else
    mode=full
    benches=("bench_core.py" "bench_docker.py" "bench_policy.py" "bench_audit.py"
             "bench_adapters.py" "bench_daemon.py" "bench_daemon_tenants.py" "bench_peers.py"
             "bench_lm_caching.py")
fi

out=benchmarks/results/latest.md
mkdir -p "$(dirname "$out")"
partial="$out.partial"
errors="$(mktemp)"
trap 'rm -f "$errors" "$partial"' EXIT

report() {
    local started=$SECONDS failed=0
    echo "# rlmbox benchmarks ($mode run)"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(
        git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- command: bash benchmarks/run_all.sh$($quick && echo ' --quick')"
    "$PY" benchmarks/bench_peers.py --machine | sed 's/^/- /'
    for bench in "${benches[@]}"; do
        local script="${bench%% *}" t0=$SECONDS rc=0
        echo
        echo "## benchmarks/$bench"
        echo
        # bench_peers prints a markdown table; the others print aligned text: keep it aligned
        if [ "$script" = bench_peers.py ]; then
            # shellcheck disable=SC2086 # the arguments are split on purpose
            timeout "$LIMIT" "$PY" benchmarks/$bench 2>"$errors" | sed '/^## /s/^## /### /' \
                || rc=$?
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
    echo "Total: $((SECONDS - started)) s; $failed of ${#benches[@]} benchmarks failed."
}

report | tee "$partial"
mv "$partial" "$out"
echo "written to $out" >&2
