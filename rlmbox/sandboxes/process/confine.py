"""Self-confinement the agent applies before any model code runs: seccomp and Landlock.

Standard library only (ctypes): this module is copied into sandboxes and imported at every
cold start, so it keeps clear of costly imports (dataclasses, platform: milliseconds each).
Both layers are defence in depth behind the backend's own walls (namespaces, containers,
gVisor). Each function returns what it achieved, so the host can record it; a layer the
kernel lacks is reported, never faked.

The seccomp filter refuses (EPERM) syscalls that widen the attack surface of the host kernel
or escape a namespace: ptrace, mount and the new mount API (fspick included), unshare, setns,
clone with a namespace flag, bpf, io_uring, keyctl, userfaultfd, perf_event_open, module and
kexec loading, clock setting, pidfd_getfd, modify_ldt, personality changes, and every socket
family except AF_UNIX. clone3 answers ENOSYS: its flags sit in memory a filter cannot read,
so libc falls back to clone, whose flags it can.

Landlock makes the file system read-only except the writable paths given, denies TCP
bind/connect (ABI >= 4), and scopes signals and abstract Unix sockets to the sandbox
(ABI >= 6).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

# --- seccomp ---------------------------------------------------------------------------

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_LD_ABS_W = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_AF_UNIX = 1
# clone()'s namespace flags; CLONE_NEWTIME (0x80) lies in clone()'s exit-signal byte and
# exists only for clone3 and unshare, both refused whole
_CLONE_NAMESPACE_FLAGS = (0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000
                          | 0x20000000 | 0x40000000)
_PERSONALITY_QUERY, _PER_LINUX = 0xFFFFFFFF, 0
_X32_BIT = 0x40000000

_DENIED_X86_64 = {
    "ptrace": 101, "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "bpf": 321,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 250,
    "add_key": 248, "request_key": 249, "userfaultfd": 323, "perf_event_open": 298,
    "kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313,
    "delete_module": 176, "reboot": 169, "swapon": 167, "swapoff": 168, "pivot_root": 155,
    "chroot": 161, "clock_settime": 227, "settimeofday": 164, "adjtimex": 159,
    "clock_adjtime": 305, "process_vm_readv": 310, "process_vm_writev": 311,
    "open_by_handle_at": 304, "name_to_handle_at": 303, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "mount_setattr": 442, "acct": 163,
    "quotactl": 179, "syslog": 103, "iopl": 172, "ioperm": 173, "kcmp": 312,
    "sethostname": 170, "setdomainname": 171, "vhangup": 153, "lookup_dcookie": 212,
    "fspick": 433, "pidfd_getfd": 438, "modify_ldt": 154,
}
_DENIED_AARCH64 = {
    "ptrace": 117, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "bpf": 280,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "keyctl": 219,
    "add_key": 217, "request_key": 218, "userfaultfd": 282, "perf_event_open": 241,
    "kexec_load": 104, "kexec_file_load": 294, "init_module": 105, "finit_module": 273,
    "delete_module": 106, "reboot": 142, "swapon": 224, "swapoff": 225, "pivot_root": 41,
    "chroot": 51, "clock_settime": 112, "settimeofday": 170, "adjtimex": 171,
    "clock_adjtime": 266, "process_vm_readv": 270, "process_vm_writev": 271,
    "open_by_handle_at": 265, "name_to_handle_at": 264, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "mount_setattr": 442, "acct": 89,
    "quotactl": 60, "syslog": 116, "kcmp": 272, "sethostname": 161, "setdomainname": 162,
    "vhangup": 58, "lookup_dcookie": 18, "fspick": 433, "pidfd_getfd": 438,
}
_CLONE3 = 435   # same number on x86_64 and aarch64


class _Arch:
    """One architecture's audit number and the syscall numbers the filter tests."""

    __slots__ = ("audit_arch", "clone", "denied", "personality", "socket")

    def __init__(self, audit_arch: int, *, socket: int, clone: int, personality: int,
                 denied: dict[str, int]) -> None:
        self.audit_arch = audit_arch
        self.socket = socket
        self.clone = clone
        self.personality = personality
        self.denied = denied


_ARCHES = {
    "x86_64": _Arch(0xC000003E, socket=41, clone=56, personality=135, denied=_DENIED_X86_64),
    "aarch64": _Arch(0xC00000B7, socket=198, clone=220, personality=92,
                     denied=_DENIED_AARCH64),
}


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The BPF program for ``machine`` as (code, jt, jf, k) tuples."""
    arch = _ARCHES[machine]
    deny = _RET_ERRNO | errno.EPERM
    allow = _RET_ALLOW
    prog: list[tuple[int, int, int, int]] = [
        (_LD_ABS_W, 0, 0, 4),                 # A = seccomp_data.arch
        (_JEQ_K, 1, 0, arch.audit_arch),      # foreign arch -> kill
        (_RET_K, 0, 0, _RET_KILL_PROCESS),
        (_LD_ABS_W, 0, 0, 0),                 # A = seccomp_data.nr
    ]
    if machine == "x86_64":
        prog += [(_JGE_K, 0, 1, _X32_BIT), (_RET_K, 0, 0, deny)]   # no x32 ABI
    for nr in sorted(set(arch.denied.values())):
        prog += [(_JEQ_K, 0, 1, nr), (_RET_K, 0, 0, deny)]
    prog += [
        (_JEQ_K, 0, 1, _CLONE3),              # clone3 -> ENOSYS: libc falls back to clone
        (_RET_K, 0, 0, _RET_ERRNO | errno.ENOSYS),
        (_JEQ_K, 0, 4, arch.clone),           # clone(): no namespace flags
        (_LD_ABS_W, 0, 0, 16),                # A = low 32 bits of args[0] (the flags)
        (_JSET_K, 0, 1, _CLONE_NAMESPACE_FLAGS),
        (_RET_K, 0, 0, deny),
        (_RET_K, 0, 0, allow),
        (_JEQ_K, 0, 5, arch.personality),     # personality(): query or plain Linux only
        (_LD_ABS_W, 0, 0, 16),
        (_JEQ_K, 2, 0, _PERSONALITY_QUERY),
        (_JEQ_K, 1, 0, _PER_LINUX),
        (_RET_K, 0, 0, deny),
        (_RET_K, 0, 0, allow),
        (_JEQ_K, 0, 3, arch.socket),          # socket(): only AF_UNIX
        (_LD_ABS_W, 0, 0, 16),                # A = low 32 bits of args[0] (little-endian)
        (_JEQ_K, 1, 0, _AF_UNIX),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT),
        (_RET_K, 0, 0, allow),
    ]
    return prog


def install_seccomp() -> str:
    """Installs the filter on this (single-threaded) process; returns what happened."""
    machine = os.uname().machine
    if machine not in _ARCHES:
        return f"unavailable: no filter for {machine}"
    prog = seccomp_program(machine)
    filters = (_SockFilter * len(prog))(*(_SockFilter(*ins) for ins in prog))
    fprog = _SockFprog(len(prog), filters)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"unavailable: no_new_privs failed ({os.strerror(ctypes.get_errno())})"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"unavailable: {os.strerror(ctypes.get_errno())}"
    denied = len(set(_ARCHES[machine].denied.values()))
    return (f"installed: {denied} syscalls denied, clone3 ENOSYS, no namespace clones, "
            "AF_UNIX only")


# --- Landlock --------------------------------------------------------------------------

_SYS_CREATE_RULESET = 444   # same number on x86_64 and aarch64
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_ALL_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1,
                  5: (1 << 16) - 1}
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is off or missing."""
    libc = _libc()
    version = libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(0, int(version))


def install_landlock(writable: list[str], readable: list[str] | None = None) -> str:
    """Restricts this (single-threaded) process; returns what happened."""
    abi = landlock_abi()
    if abi == 0:
        return "unavailable: Landlock is not enabled in this kernel"
    handled_fs = _FS_ALL_BY_ABI.get(abi, _FS_ALL_BY_ABI[5])
    handled_net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    libc = _libc()
    buf = ctypes.create_string_buffer(attr, len(attr))
    ruleset = libc.syscall(_SYS_CREATE_RULESET, buf, len(attr), 0)
    if ruleset < 0:
        return f"unavailable: {os.strerror(ctypes.get_errno())}"
    try:
        for path in readable or ["/"]:
            _add_path_rule(libc, ruleset, path, _FS_READ)
        for path in writable:
            _add_path_rule(libc, ruleset, path, handled_fs)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return f"unavailable: no_new_privs failed ({os.strerror(ctypes.get_errno())})"
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            return f"unavailable: {os.strerror(ctypes.get_errno())}"
    finally:
        os.close(ruleset)
    extras = (", TCP denied" if handled_net else "") + (", signals scoped" if scoped else "")
    return f"installed: ABI {abi}, writable {','.join(writable)}{extras}"


def _add_path_rule(libc: ctypes.CDLL, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # a path this sandbox does not have needs no rule
    try:
        if not os.path.isdir(path):
            access &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)
        attr = struct.pack("=Qi", access, fd)   # struct landlock_path_beneath_attr is packed
        buf = ctypes.create_string_buffer(attr, len(attr))
        if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, buf, 0) != 0:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule({path})")
    finally:
        os.close(fd)
