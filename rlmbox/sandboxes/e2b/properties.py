"""What an E2B sandbox provides, and who vouches for each property.

The probe cell inside the VM demonstrates what it can observe (a non-root uid, no
capabilities, the agent's seccomp filter, a read-only ``/usr``). Some guarantees are the
VM's and cannot be seen from inside it: that it is a Firecracker microVM at all, that the
host's files and processes are out of reach, that memory, CPU and disk are the template's,
that killing the VM ends everything in it, and (with internet off) that no packet leaves.
Those are **provider-attested**: rlmbox counts them because E2B states them, and ``rlmbox
doctor`` shows them apart from what was measured.
"""

from __future__ import annotations

from rlmbox.sandboxes.base import IsolationProperty as P

PROVIDER_ATTESTED: frozenset[P] = frozenset({
    P.HARDWARE_VIRTUALIZATION, P.FILESYSTEM_PRIVATE, P.PID_NAMESPACE, P.MEMORY_LIMIT,
    P.CPU_LIMIT, P.DISK_LIMIT, P.TREE_KILL})
# attested only while the sandbox's internet access is off (E2B's switch)
OFFLINE_ATTESTED: frozenset[P] = frozenset({P.NETWORK_NONE})
# what a probe may demonstrate inside the VM and the backend then counts
PROBED: frozenset[P] = frozenset({
    P.NON_ROOT, P.CAPS_DROPPED, P.SECCOMP, P.NO_NEW_PRIVILEGES, P.READ_ONLY_ROOT})


def attested(internet: bool) -> frozenset[P]:
    """The provider-attested properties of a sandbox with ``internet`` on or off."""
    return PROVIDER_ATTESTED if internet else PROVIDER_ATTESTED | OFFLINE_ATTESTED
