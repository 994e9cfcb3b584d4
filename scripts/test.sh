#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, provision the engines, lint, type-check,
# a short fuzz pass, then pytest. With CI set, a missing Docker engine or gVisor fails.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }

bash scripts/bootstrap.sh
if [ -f scripts/provision.sh ]; then
    log "provisioning Docker, gVisor and the sandbox image"
    bash scripts/provision.sh
fi

log "ruff"
.venv/bin/ruff check rlmbox tests fuzz benchmarks
log "mypy --strict"
.venv/bin/mypy
# tests/docker has no __init__.py (a package named "docker" would shadow the SDK), the
# benchmarks import their helpers by path, and tests/support is on pytest's pythonpath (the
# E2B test double): mypy gets those directories as search paths.
MYPYPATH=tests/docker:tests/support:benchmarks:fuzz .venv/bin/mypy --explicit-package-bases tests benchmarks fuzz/*.py
if [ -f fuzz/run.sh ]; then
    log "fuzz pass (${FUZZ_SECONDS:=30} s per target)"   # CI: 3 of its ~40 min
    FUZZ_SECONDS="$FUZZ_SECONDS" bash fuzz/run.sh
fi
log "pytest"
# the slowest tests are listed, to keep the run short
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "$@"
