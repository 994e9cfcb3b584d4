#!/usr/bin/env bash
# Sets up rlmbox on this machine: Debian packages (when root and missing), a virtualenv in
# .venv with the package installed editable. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            log "missing Debian packages: ${missing[*]} (run as root, or install them yourself)"
            return 0
        fi
        log "installing Debian packages: ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
            DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
        }
    fi
}

if command -v dpkg-query >/dev/null 2>&1; then
    apt_install bubblewrap python3-venv util-linux iproute2
fi

PYTHON="${RLMBOX_PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || { log "rlmbox needs Python >= 3.11 (found $("$PYTHON" --version))"; exit 1; }

stamp=".venv/.rlmbox-installed"
recipe_hash=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$recipe_hash" ]; then
    log "installing rlmbox and its development tools into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$recipe_hash" > "$stamp"
fi
log "ready: .venv/bin/rlmbox"
