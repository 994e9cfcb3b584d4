#!/usr/bin/env bash
# Runs every fuzz/fuzz_*.py atheris target for N seconds each (default 60).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      e.g. fuzz/run.sh 600 frames
#   FUZZ_SECONDS=30 fuzz/run.sh             (what scripts/test.sh runs in CI)
#
# Each target fuzz/fuzz_<name>.py starts from its committed seed corpus fuzz/corpus/<name>/
# (read only) plus a scratch corpus fuzz/.work/<name>/ (new inputs, not committed). A crash
# is written to fuzz/crashes/<name>/; commit it, and tests/security/test_fuzz_regressions.py
# replays it on every test run. Exit status: 0 when no target crashed, 1 otherwise.
set -u
cd "$(dirname "$0")/.."
seconds="${1:-${FUZZ_SECONDS:-60}}"
shift || true
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

targets=()
if [ "$#" -gt 0 ]; then
    for name in "$@"; do targets+=("fuzz/fuzz_${name}.py"); done
else
    for file in fuzz/fuzz_*.py; do [ -e "$file" ] && targets+=("$file"); done
fi

status=0
for file in "${targets[@]}"; do
    name="$(basename "$file" .py)"; name="${name#fuzz_}"
    seeds="fuzz/corpus/$name"; work="fuzz/.work/$name"; crashes="fuzz/crashes/$name"
    mkdir -p "$seeds" "$work" "$crashes"
    echo "== $name: ${seconds}s from $(find "$seeds" -type f | wc -l) seeds"
    log="fuzz/.work/$name.log"
    if "$python" "$file" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$crashes/" -print_final_stats=1 "$work" "$seeds" \
            > "$log" 2>&1; then
        if ! grep -q "^stat::number_of_executed_units" "$log"; then
            # exit 0 without libFuzzer's stats: the target never started fuzzing
            tail -n 10 "$log" >&2
            echo "!! $name: ran no fuzzing (no executed units reported; full log: $log)" >&2
            status=1
            continue
        fi
        grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$log" \
            | sed "s/^/   $name /"
    else
        tail -n 40 "$log" >&2
        echo "!! $name: crash or failure; inputs in $crashes/ (full log: $log)" >&2
        status=1
    fi
done
exit "$status"
