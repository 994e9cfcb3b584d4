#!/usr/bin/env bash
# Provisions the container backends: a Docker engine with gVisor's runsc registered as a
# runtime, debootstrap and bubblewrap, and the offline sandbox image. Idempotent: it only
# adds what is missing and uses an engine that already answers as it is.
#
# Run from the repository root after scripts/bootstrap.sh:   bash scripts/provision.sh
# With CI set, anything missing is a failure (exit 1, naming it); without CI it is reported
# and the script exits 0 so the test suite can skip what cannot run here.
# Progress goes to stderr. Environment: RLMBOX_PYTHON (the venv python; default .venv),
# RLMBOX_DOCKERD_WAIT (seconds to wait for the engine; default 60).
set -uo pipefail
cd "$(dirname "$0")/.."

log() { printf '[provision] %s\n' "$*" >&2; }
missing=()
miss() { missing+=("$1"); log "MISSING: $1"; }
finish() {
    if [ ${#missing[@]} -eq 0 ]; then
        log "done: engine, runtimes and image are ready"; exit 0
    fi
    if [ -n "${CI:-}" ]; then
        log "FAILED (CI is set): ${missing[*]}"; exit 1
    fi
    log "incomplete (tests that need these will skip): ${missing[*]}"; exit 0
}

is_root() { [ "$(id -u)" -eq 0 ]; }
engine_answers() { timeout 10 docker info >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
runsc_registered() {
    timeout 10 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

PY="${RLMBOX_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
WAIT="${RLMBOX_DOCKERD_WAIT:-60}"
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/var/log/rlmbox-dockerd.log

# 1. Debian packages, when we are root on Debian and no engine is already running.
preexisting_engine=false
if command -v docker >/dev/null 2>&1 && engine_answers; then
    preexisting_engine=true
    log "a Docker engine already answers; using it as it is"
fi
if is_root && command -v apt-get >/dev/null 2>&1; then
    want=(debootstrap bubblewrap chromium)   # chromium: the viewer's browser tests
    $preexisting_engine || want+=(docker.io)
    command -v runsc >/dev/null 2>&1 || want+=(runsc)
    need=()
    for pkg in "${want[@]}"; do have_pkg "$pkg" || need+=("$pkg"); done
    if [ ${#need[@]} -gt 0 ]; then
        log "installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
            apt-get update -q >/dev/null 2>&1
            apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
                || log "apt-get install ${need[*]} failed"
        fi
    fi
else
    log "not root or no apt-get: installing nothing"
fi
command -v bwrap >/dev/null 2>&1 || miss "bubblewrap (apt-get install bubblewrap)"

# 2. Register runsc with a local dockerd (root only; a developer's Docker Desktop or an
#    engine we cannot see as a local process is used as it is).
register_runsc() {
    local runsc_path; runsc_path="$(command -v runsc)"
    mkdir -p /etc/docker
    # ptrace: the only platform Debian's 2022 gVisor runs here (KVM hangs at boot in a VM).
    # --network=none: no network stack at all. Not --oci-seccomp: with Docker's default
    # profile, this gVisor then refuses every new thread (clone filter), breaking the agent.
    "$PY" - "$DAEMON_JSON" "$runsc_path" <<'EOF'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
config = {}
if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
wanted = {"path": runsc,
          "runtimeArgs": ["--network=none", "--platform=ptrace"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    tmp = path + ".rlmbox-tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    print("changed")
EOF
}

changed=""
if is_root && command -v runsc >/dev/null 2>&1 \
        && { ! $preexisting_engine || pgrep -x dockerd >/dev/null 2>&1; }; then
    changed="$(register_runsc)" || miss "a valid $DAEMON_JSON (it could not be parsed)"
    if [ "$changed" = "changed" ]; then
        log "registered runsc in $DAEMON_JSON"
        if $preexisting_engine; then
            log "reloading dockerd (SIGHUP) to pick up the runtime"
            kill -HUP "$(pgrep -x dockerd | head -1)"; sleep 1
        fi
    fi
fi

# 3. Start the engine when none answers.
if ! $preexisting_engine; then
    if ! command -v dockerd >/dev/null 2>&1; then
        miss "a Docker engine (apt-get install docker.io, or start Docker)"
    elif ! is_root; then
        miss "a running Docker engine (dockerd is installed but only root can start it)"
    else
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            log "starting docker with systemctl"
            systemctl start docker >/dev/null 2>&1 || log "systemctl start docker failed"
        elif ! pgrep -x dockerd >/dev/null 2>&1; then
            log "starting dockerd in the background (log: $DOCKERD_LOG)"
            setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
        else
            log "dockerd runs but does not answer yet"
        fi
        waited=0
        until engine_answers; do
            if [ "$waited" -ge "$WAIT" ]; then
                miss "a Docker engine answering within ${WAIT}s (see $DOCKERD_LOG)"; break
            fi
            sleep 1; waited=$((waited + 1))
        done
        engine_answers && log "engine answers after ${waited}s"
    fi
fi

if ! engine_answers; then
    finish
fi
runsc_registered || miss "the runsc runtime in the engine (apt-get install runsc; register it in $DAEMON_JSON)"

# 4. The sandbox image, cached by the content hash of its recipe.
if image="$("$PY" -m rlmbox.sandboxes.images.build)"; then
    log "sandbox image: $image"
else
    miss "the sandbox image (see the errors above; retry: $PY -m rlmbox.sandboxes.images.build)"
    finish
fi

# 5. Smoke test each runtime once, bounded, and remove the container whatever happens.
smoke() {
    local runtime="$1" name="rlmbox-provision-smoke-$1-$$"
    if timeout 60 docker run --rm --name "$name" --runtime "$runtime" --network none \
            --read-only "$image" python3 -c 'print("ok")' 2>/dev/null | grep -qx ok; then
        log "runtime $runtime runs the image"
    else
        miss "a working $runtime runtime (docker run --runtime $runtime failed)"
    fi
    timeout 30 docker rm -f "$name" >/dev/null 2>&1 || true
}
smoke runc
runsc_registered && smoke runsc
finish
