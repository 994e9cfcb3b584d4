"""Process and kernel surface: privileges, dangerous syscalls, /proc, files, devices, signals.

Model code talks to the kernel directly (ctypes), so each probe issues the real syscall
and reports its errno. Every one must fail; on the ``process`` backend it must fail with
EPERM, which proves the seccomp filter refused it (not an accidental EFAULT from a null
argument). Where a probe could change the host if isolation broke, it asks for no change
(the clock is set to the value it already has, a tmpfs is mounted on a sandbox path).
"""

from __future__ import annotations

import errno
import hashlib
import time
from pathlib import Path

import pytest

from rlmbox.sandboxes.bundle import agent_bundle_dir

from .harness import HostTargets, Runtimes, run_json, watched_session

SYSCALL_PROBE = r"""
import ctypes, json, os, platform
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {
    "x86_64": dict(ptrace=101, mount=165, unshare=272, setns=308, bpf=321,
                   io_uring_setup=425, keyctl=250, add_key=248, userfaultfd=323,
                   perf_event_open=298, clock_settime=227, init_module=175,
                   kexec_load=246, pivot_root=155, chroot=161, open_by_handle_at=304,
                   process_vm_readv=310, fsopen=430, open_tree=428),
    "aarch64": dict(ptrace=117, mount=40, unshare=97, setns=268, bpf=280,
                    io_uring_setup=425, keyctl=219, add_key=217, userfaultfd=282,
                    perf_event_open=241, clock_settime=112, init_module=105,
                    kexec_load=104, pivot_root=41, chroot=51, open_by_handle_at=265,
                    process_vm_readv=270, fsopen=430, open_tree=428),
}[platform.machine()]
def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    return 0 if r >= 0 else ctypes.get_errno()
os.makedirs("/tmp/m", exist_ok=True)
ts = (ctypes.c_long * 2)()
libc.clock_gettime(0, ts)
res = {
    "ptrace_attach_1": sc("ptrace", 16, 1, 0, 0),
    "ptrace_traceme": sc("ptrace", 0, 0, 0, 0),
    "mount_tmpfs": (0 if libc.mount(b"none", b"/tmp/m", b"tmpfs", 0, None) == 0
                    else ctypes.get_errno()),
    "unshare_user": sc("unshare", 0x10000000),
    "unshare_mount": sc("unshare", 0x00020000),
    "setns": sc("setns", 0, 0),
    "bpf_map_create": sc("bpf", 0, 0, 0),
    "io_uring_setup": sc("io_uring_setup", 1, 0),
    "keyctl_get_keyring": sc("keyctl", 0, -3, 0),
    "add_key": sc("add_key", 0, 0, 0, 0, -3),
    "userfaultfd": sc("userfaultfd", 0),
    "perf_event_open": sc("perf_event_open", 0, 0, -1, -1, 0),
    "clock_settime_same_value": sc("clock_settime", 0, ctypes.addressof(ts)),
    "init_module": sc("init_module", 0, 0, 0),
    "kexec_load": sc("kexec_load", 0, 0, 0, 0),
    "pivot_root": sc("pivot_root", 0, 0),
    "chroot": (0 if libc.chroot(b"/tmp") == 0 else ctypes.get_errno()),
    "open_by_handle_at": sc("open_by_handle_at", 0, 0, 0),
    "process_vm_readv": sc("process_vm_readv", 1, 0, 0, 0, 0, 0),
    "fsopen": sc("fsopen", 0, 0),
    "open_tree": sc("open_tree", -100, 0, 0),
}
print(json.dumps(res))
"""

STATUS_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
ambient = sum(1 << cap for cap in range(64) if libc.prctl(47, 1, cap, 0, 0) == 1)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
status["ambient_prctl"] = "%x" % ambient                       # PR_CAP_AMBIENT_IS_SET
status["no_new_privs_prctl"] = str(libc.prctl(39, 0, 0, 0, 0))  # PR_GET_NO_NEW_PRIVS
print(json.dumps({k: status[k].strip() for k in
                  ("Uid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
                   "ambient_prctl", "no_new_privs_prctl")
                  if k in status} | {"euid": os.geteuid(),
                  "docker_sock": any(os.path.exists(p) for p in
                                     ("/var/run/docker.sock", "/run/docker.sock"))}))
"""


def test_dangerous_syscalls_are_refused(backend: str, runtimes: Runtimes,
                                        host: HostTargets) -> None:
    """ptrace, mount, unshare, setns, bpf, io_uring, keyctl, userfaultfd, perf, clock,
    module and kexec loading, chroot, handle opening and cross-process reads all fail."""
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, SYSCALL_PROBE)
    succeeded = sorted(name for name, err in outcome.items() if err == 0)
    assert not succeeded, f"syscalls succeeded in the sandbox: {succeeded}"
    if backend == "process":   # the seccomp filter itself refused them
        not_eperm = {n: errno.errorcode.get(e, e) for n, e in outcome.items()
                     if e != errno.EPERM and n not in ("ptrace_attach_1", "chroot",
                                                       "mount_tmpfs")}
        assert not not_eperm, f"refused by something other than seccomp: {not_eperm}"
    host.assert_unharmed()


def test_privilege_probe(backend: str, runtimes: Runtimes) -> None:
    """No capabilities, no_new_privs set, a seccomp filter (where the runtime has one),
    not root, no Docker socket."""
    with watched_session(runtimes()) as (session, witness):
        status = run_json(session, STATUS_PROBE)
        host_uids = {Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0]
                     for pid in witness.observe() if Path(f"/proc/{pid}/status").exists()}
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    # gVisor's /proc/self/status has no CapAmb or NoNewPrivs lines: prctl answers instead
    assert int(status.get("CapAmb", status["ambient_prctl"]), 16) == 0
    assert status.get("NoNewPrivs", status["no_new_privs_prctl"]) == "1"
    assert status["euid"] != 0
    assert status["docker_sock"] is False
    if backend != "docker-runsc":   # gVisor filters in its Sentry, not with host seccomp
        assert status["Seccomp"] == "2"
    if backend == "process":   # on the host, the sandbox's processes are not root either
        assert "0" not in host_uids


def test_proc_and_fd_tricks_reach_nothing(backend: str, runtimes: Runtimes,
                                          host: HostTargets) -> None:
    """/proc/1/root, /proc/<host pid>/..., and the agent's own descriptors lead to no
    host file: no open descriptor names a host path, the host's /var/tmp is not visible."""
    rt = runtimes()
    audit_dir = str(rt.audit_path.parent) if rt.audit_path else "/nonexistent"
    with watched_session(rt) as (session, _):
        found = run_json(session, f"""
import json, os
T = json.loads({host.params()!r})
links = {{}}
for fd in os.listdir('/proc/self/fd'):
    try:
        links[fd] = os.readlink('/proc/self/fd/' + fd)
    except OSError:
        pass
def visible(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False
print(json.dumps({{
    "links": links,
    "proc1_root_canary": visible('/proc/1/root' + T['canary']),
    "host_pid_visible": visible('/proc/%d' % T['host_pid']),
    "victim_visible": visible('/proc/%d' % T['victim']),
    "canary_dir_visible": visible(T['canary_dir']),
    "audit_visible": visible({audit_dir!r}),
    "pids_visible": len([p for p in os.listdir('/proc') if p.isdigit()]),
}}))
""")
    for fd, target in found["links"].items():
        assert audit_dir not in target, f"fd {fd} reaches the audit log: {target}"
        assert str(host.canary_dir) not in target
        allowed: tuple[str, ...] = ("pipe:", "socket:", "anon_inode:", "/dev/null", "/proc/",
                                    "/tmp", "/rlmbox", "/usr")
        if backend == "docker-runsc":   # gVisor names the container's donated stdio fds so
            allowed += ("host:[",)      # (the protocol stream), not a host path
        assert target.startswith(allowed), f"fd {fd} -> {target}"
    for key in ("proc1_root_canary", "canary_dir_visible", "audit_visible"):
        assert found[key] is False, key
    assert found["pids_visible"] < 10, "host processes are visible in /proc"
    host.assert_unharmed()


def test_symlink_and_hardlink_escapes_fail(runtimes: Runtimes, host: HostTargets) -> None:
    """Symlinks from the work directory to host paths, to /proc/<pid>/root and up with
    '..' resolve inside the sandbox; hard links cannot cross into read-only mounts."""
    with watched_session(runtimes()) as (session, _):
        gained = run_json(session, f"""
import json, os
T = json.loads({host.params()!r})
os.chdir('/tmp')
out = {{}}
def attempt(name, fn):
    try:
        out[name] = bool(fn())
    except OSError:
        out[name] = False
os.symlink(T['canary'], 'l1')
os.symlink('/proc/%d/root' % T['host_pid'], 'l2')
os.symlink('../' * 12 + T['canary'].lstrip('/'), 'l3')
attempt('symlink_read', lambda: T['canary_text'] in open('l1').read())
attempt('proc_root_read', lambda: T['canary_text'] in open('l2' + T['canary']).read())
attempt('dotdot_read', lambda: T['canary_text'] in open('l3').read())
attempt('symlink_write', lambda: os.symlink('/tmp/x', T['write_target']) is None)
attempt('hardlink_agent', lambda: os.link('/rlmbox/agent/agent.py', '/tmp/agent') is None
        and open('/tmp/agent', 'a').write('#') > 0)
print(json.dumps(out))
""")
    assert not any(gained.values()), gained
    host.assert_unharmed()


def test_read_only_mounts_stay_read_only(backend: str, runtimes: Runtimes,
                                         host: HostTargets) -> None:
    """System paths, the shared agent bundle and the staged context cannot be written, so
    one sandbox cannot plant code for the next; /tmp is the only writable place."""
    bundle = agent_bundle_dir() if backend == "process" else None
    before = _digest_tree(bundle) if bundle else None
    with watched_session(runtimes(), context="the context") as (session, _):
        written = run_json(session, """
import glob, json, os, sys
targets = ['/usr/lib/rlmbox-pwned', '/etc/passwd', '/bin/sh-pwned', '/pwned',
           os.path.join(os.path.dirname(os.__file__), 'pwned.py')]
targets += glob.glob('/rlmbox/**/*.py', recursive=True)
targets += glob.glob('/rlmbox/stage/*')
out = {}
for path in targets:
    try:
        with open(path, 'a') as handle:
            handle.write('pwned')
        out[path] = True
    except OSError:
        out[path] = False
try:
    open('/tmp/ok', 'w').write('fine')
    out['tmp_writable'] = True
except OSError:
    out['tmp_writable'] = False
print(json.dumps(out))
""")
        assert session.exec("print(context)").stdout == "the context\n"
    assert written.pop("tmp_writable") is True
    assert not any(written.values()), {k: v for k, v in written.items() if v}
    if bundle is not None:
        assert _digest_tree(bundle) == before, "the shared agent bundle was modified"
    host.assert_unharmed()


def _digest_tree(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_device_nodes_are_out_of_reach(backend: str, runtimes: Runtimes) -> None:
    """No raw memory, disk, kernel log or port devices; no mknod (under gVisor a node can
    be made in its own tmpfs, but it opens nothing: gVisor has no /dev/mem)."""
    with watched_session(runtimes()) as (session, _):
        opened = run_json(session, """
import json, os, stat
out = {}
for path in ['/dev/mem', '/dev/kmem', '/dev/port', '/dev/kmsg', '/dev/sda', '/dev/vda',
             '/dev/nvme0n1', '/dev/fuse', '/dev/kvm', '/dev/net/tun', '/dev/cpu/0/msr']:
    try:
        os.close(os.open(path, os.O_RDONLY))
        out[path] = True
    except OSError:
        out[path] = False
try:
    os.mknod('/tmp/mem', stat.S_IFCHR | 0o600, os.makedev(1, 1))
    out['mknod'] = True
except OSError:
    out['mknod'] = False
try:
    os.close(os.open('/tmp/mem', os.O_RDONLY))
    out['made_node_opens'] = True
except OSError:
    out['made_node_opens'] = False
print(json.dumps(out))
""")
    if backend == "docker-runsc":
        # gVisor's Sentry serves its own /dev/fuse and /dev/net/tun (no host device behind
        # them, and the sandbox has no network) and lets mknod write an inert node into its
        # private tmpfs; docs/security.md lists this as a gVisor difference
        for emulated in ("/dev/fuse", "/dev/net/tun", "mknod"):
            opened.pop(emulated)
    assert not any(opened.values()), {k: v for k, v in opened.items() if v}


def test_setuid_binaries_grant_nothing(runtimes: Runtimes) -> None:
    """Running setuid-root binaries (mount, su, passwd) gives no privilege: no_new_privs
    and the user namespace make the setuid bit inert."""
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, """
import json, os, stat, subprocess
setuid = [p for p in ('/usr/bin/mount', '/usr/bin/su', '/usr/bin/passwd', '/usr/bin/newgrp',
                      '/usr/bin/chsh', '/usr/bin/sudo')
          if os.path.exists(p) and os.stat(p).st_mode & stat.S_ISUID]
os.makedirs('/tmp/m', exist_ok=True)
runs = {}
for argv in (['/usr/bin/mount', '-t', 'tmpfs', 'none', '/tmp/m'],
             ['/usr/bin/su', '-c', 'id -u'], ['/usr/bin/sudo', '-n', 'id', '-u']):
    if argv[0] in setuid:
        p = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        runs[argv[0]] = [p.returncode, p.stdout.decode().strip()]
mounted = any(' /tmp/m ' in line for line in open('/proc/self/mountinfo'))
print(json.dumps({'setuid': setuid, 'runs': runs, 'mounted': mounted,
                  'euid': os.geteuid()}))
""")
    assert outcome["mounted"] is False
    for binary, (code, out) in outcome["runs"].items():
        assert code != 0 or out != "0", f"{binary} gave root"
    assert outcome["euid"] != 0


def test_signals_reach_no_process_outside(runtimes: Runtimes, host: HostTargets) -> None:
    """kill(-1), a sweep of every pid and a targeted kill of a host process with the
    sandbox's own uid reach nothing outside; a neighbouring session keeps running."""
    rt = runtimes()
    with watched_session(rt) as (neighbour, _), watched_session(rt) as (attacker, _):
        neighbour.exec("secret = 'neighbour-secret'")
        outcome = run_json(attacker, f"""
import json, os, signal
T = json.loads({host.params()!r})
hits = []
for pid in list(range(2, 4096)) + [T['victim'], T['host_pid']]:
    if pid == os.getpid():
        continue
    try:
        os.kill(pid, 0)
        hits.append(pid)
    except OSError:
        pass
for pid in (T['victim'], T['host_pid']):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
print(json.dumps({{"hits": hits}}))
""")
        assert len(outcome["hits"]) < 5, f"signalable pids: {outcome['hits']}"
        assert host.victim.pid not in outcome["hits"]
        follow = neighbour.exec("print(secret)")
        assert (follow.status, follow.stdout) == ("ok", "neighbour-secret\n")
    host.assert_unharmed()


def test_clock_cannot_be_changed(runtimes: Runtimes) -> None:
    """Setting the clock (settimeofday, clock_settime, and date(1) where the image has it)
    fails; the host's clock does not jump."""
    wall, mono = time.time(), time.monotonic()
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, """
import ctypes, json, shutil, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
tv = (ctypes.c_long * 2)(946684800, 0)   # 2000-01-01
r = libc.settimeofday(ctypes.byref(tv), None)
try:
    time.clock_settime(time.CLOCK_REALTIME, 946684800.0)
    c = 0
except OSError:
    c = -1
d = (subprocess.run(['date', '-s', '@946684800'], capture_output=True).returncode
     if shutil.which('date') else None)
print(json.dumps({'settimeofday': r, 'clock_settime': c, 'date': d}))
""")
    assert outcome["settimeofday"] != 0
    assert outcome["clock_settime"] != 0
    assert outcome["date"] != 0   # None (no date binary) or a failed exit
    drift = abs((time.time() - wall) - (time.monotonic() - mono))
    assert drift < 60, "the host clock jumped while the sandbox ran"


@pytest.mark.parametrize("mode", ["unshare", "nsenter"])
def test_namespace_tools_fail(runtimes: Runtimes, mode: str) -> None:
    """The unshare(1) and nsenter(1) tools cannot make or join namespaces."""
    argv = (["unshare", "-Ur", "id", "-u"] if mode == "unshare"
            else ["nsenter", "-t", "1", "-m", "-u", "-n", "-p", "id", "-u"])
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, f"""
import json, shutil, subprocess
argv = {argv!r}
if shutil.which(argv[0]) is None:
    print(json.dumps({{'code': 127, 'out': ''}}))
else:
    p = subprocess.run(argv, capture_output=True, timeout=10)
    print(json.dumps({{'code': p.returncode, 'out': p.stdout.decode().strip()}}))
""")
    assert outcome["code"] != 0 or outcome["out"] != "0"


NAMESPACE_CLONE_PROBE = r"""
import ctypes, json, os, platform, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = {"x86_64": dict(clone=56, clone3=435, fspick=433, pidfd_getfd=438, modify_ldt=154,
                     personality=135),
      "aarch64": dict(clone=220, clone3=435, fspick=433, pidfd_getfd=438,
                      personality=92)}[platform.machine()]
SIGCHLD = 17
def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    err = ctypes.get_errno()
    if name == "clone" and r == 0:
        os._exit(0)                       # the child of a clone that should have failed
    if name == "clone" and r > 0:
        os.waitpid(r, 0)
    if name == "personality" and r >= 0:
        libc.syscall(ctypes.c_long(NR[name]), ctypes.c_long(r))   # put it back
    return 0 if r >= 0 else err
res = {f"clone_{ns}": sc("clone", flag | SIGCHLD, 0, 0, 0, 0) for ns, flag in
       (("newuser", 0x10000000), ("newns", 0x00020000), ("newnet", 0x40000000),
        ("newpid", 0x20000000), ("newipc", 0x08000000), ("newuts", 0x04000000),
        ("newcgroup", 0x02000000))}
res["clone3"] = sc("clone3", 0, 0)
res["fspick"] = sc("fspick", -100, 0, 0)
try:
    me = os.pidfd_open(os.getpid())
except OSError:                           # gVisor (2022) has no pidfd_open
    me = -1
res["pidfd_getfd"] = sc("pidfd_getfd", me, 0, 0)
res["personality_no_aslr"] = sc("personality", 0x0040000)
if "modify_ldt" in NR:
    res["modify_ldt"] = sc("modify_ldt", 0, 0, 0)
t = threading.Thread(target=lambda: None); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
print(json.dumps({"refused": res, "thread_and_fork_work":
                  os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 7}))
"""


def test_namespace_clones_and_odd_syscalls_are_refused(backend: str, runtimes: Runtimes,
                                                       host: HostTargets) -> None:
    """clone with a namespace flag, clone3 (ENOSYS, so libc falls back to clone, whose flags
    the filter can read), fspick, pidfd_getfd, modify_ldt and personality all fail; threads
    and fork still work."""
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, NAMESPACE_CLONE_PROBE)
    refused = outcome["refused"]
    succeeded = sorted(name for name, err in refused.items() if err == 0)
    assert not succeeded, f"syscalls succeeded in the sandbox: {succeeded}"
    assert outcome["thread_and_fork_work"] is True
    if backend == "process":   # the seccomp filter itself refused them
        assert refused.pop("clone3") == errno.ENOSYS
        not_eperm = {n: errno.errorcode.get(e, e) for n, e in refused.items()
                     if e != errno.EPERM}
        assert not not_eperm, f"refused by something other than seccomp: {not_eperm}"
    host.assert_unharmed()
