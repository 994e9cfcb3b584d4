"""Exfiltration: TCP, UDP, DNS, IPv6, raw, netlink and Unix sockets, and a permitted LM call.

Safety rule of this file: traffic is aimed ONLY at listeners the test itself starts, on the
host's loopback (127.0.0.1, ::1) or inside a network namespace the test creates (with a
veth pair whose route is checked before anything is sent). No name is ever resolved (a
resolver would be a real address): the "DNS" case sends a hand-made query to the test's
own UDP listener. If isolation broke, these tests would reach only their own listeners.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rlmbox.lm.scripted import ScriptedLM

from .harness import HostTargets, Runtimes, events, run_json, watched_session

CONNECT_PROBE = r"""
import json, socket
T = json.loads(PARAMS)
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = True
    except OSError as exc:
        out[name] = False
def tcp(family, host, port):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((host, port))
        s.sendall(b'exfil')
    finally:
        s.close()
def udp(host, port, payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(payload, (host, port))
    finally:
        s.close()
# a DNS query for exfil.example, carrying data in the label, to the test's own listener
query = (b'\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00'
         b'\x06secret\x05exfil\x07example\x00\x00\x01\x00\x01')
attempt('tcp4_loopback', lambda: tcp(socket.AF_INET, '127.0.0.1', T['tcp_port']))
if T['tcp6_port']:
    attempt('tcp6_loopback', lambda: tcp(socket.AF_INET6, '::1', T['tcp6_port']))
attempt('udp_loopback', lambda: udp('127.0.0.1', T['udp_port'], b'exfil'))
attempt('dns_loopback', lambda: udp('127.0.0.1', T['udp_port'], query))
print(json.dumps(out))
"""


def test_loopback_listeners_are_unreachable(runtimes: Runtimes, host: HostTargets) -> None:
    """TCP (v4 and v6), UDP and a DNS query aimed at listeners on the host's loopback
    never arrive."""
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, CONNECT_PROBE.replace("PARAMS", repr(host.params())))
    # sendto may "succeed" into the sandbox's own empty loopback; arrival is what counts
    assert outcome["tcp4_loopback"] is False
    assert outcome.get("tcp6_loopback", False) is False
    host.assert_unharmed()   # includes: no connection and no datagram reached a listener


def test_raw_packet_and_netlink_sockets_are_refused(runtimes: Runtimes) -> None:
    """Raw IP, packet and netlink sockets (the tools to forge traffic or reconfigure the
    network) cannot even be created; nothing is sent."""
    with watched_session(runtimes()) as (session, _):
        made = run_json(session, """
import json, socket
out = {}
for name, args in {
    'raw_icmp': (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    'raw_ip6': (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    'packet': (socket.AF_PACKET, socket.SOCK_RAW, 0),
    'netlink_route': (socket.AF_NETLINK, socket.SOCK_RAW, 0),
}.items():
    try:
        socket.socket(*args).close()
        out[name] = True
    except OSError:
        out[name] = False
print(json.dumps(out))
""")
    assert not any(made.values()), made


def test_abstract_and_path_unix_sockets_of_the_host_are_unreachable(
        runtimes: Runtimes, host: HostTargets) -> None:
    """A host service on an abstract Unix socket (the class of the containerd-shim escape)
    or on a socket file is out of reach: abstract names are per network namespace and
    host paths are not mounted."""
    name = f"rlmbox-sec-{secrets.token_hex(6)}"
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + name)
    abstract.listen(1)
    abstract.setblocking(False)
    path = host.canary_dir / "service.sock"
    on_disk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    on_disk.bind(str(path))
    os.chmod(path, 0o777)  # only the sandbox's walls may keep it out
    on_disk.listen(1)
    on_disk.setblocking(False)
    try:
        with watched_session(runtimes()) as (session, _):
            outcome = run_json(session, f"""
import json, socket
out = {{}}
for key, address in (('abstract', '\\0' + {name!r}), ('path', {str(path)!r})):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address)
        out[key] = True
    except OSError:
        out[key] = False
    finally:
        s.close()
print(json.dumps(out))
""")
        assert outcome == {"abstract": False, "path": False}
        for listener in (abstract, on_disk):
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        abstract.close()
        on_disk.close()
        path.unlink(missing_ok=True)


# --- a network namespace standing in for the gateway and the metadata service --------------

SUBNET_HOST, SUBNET_PEER = "10.213.77.1", "10.213.77.2"

LISTENER = r"""
import socket, sys, select
marker = sys.argv[1]
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('10.213.77.2', 8080)); t.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('10.213.77.2', 53))
open(marker + '.ready', 'w').close()
while True:
    ready, _, _ = select.select([t, u], [], [])
    with open(marker, 'a') as f:
        f.write('hit\n')
    for s in ready:
        if s is t:
            s.accept()[0].close()
        else:
            s.recvfrom(4096)
"""


@dataclass
class Netns:
    name: str
    marker: Path

    def hits(self) -> int:
        return len(self.marker.read_text().splitlines()) if self.marker.exists() else 0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns(tmp_path: Path) -> Iterator[Netns]:
    """A namespace the test owns, joined to the host by a veth pair, with listeners on
    10.213.77.2 (TCP 8080, UDP 53). Torn down in ``finally``."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    tag = secrets.token_hex(3)
    name, host_if, peer_if = f"rlmbox-sec-{tag}", f"rsh{tag}", f"rsp{tag}"
    marker = tmp_path / "netns-hits"
    listener: subprocess.Popen[bytes] | None = None
    try:
        _ip("netns", "add", name)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", name)
        _ip("addr", "add", f"{SUBNET_HOST}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{SUBNET_PEER}/30", "dev", peer_if)
        _ip("-n", name, "link", "set", peer_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        # safety: the host must route the target into this namespace and nowhere else
        route = subprocess.run(["ip", "route", "get", SUBNET_PEER], check=True,
                               capture_output=True, text=True).stdout
        assert f"dev {host_if}" in route, f"unsafe route to {SUBNET_PEER}: {route}"
        listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c",
                                     LISTENER, str(marker)])
        deadline = time.monotonic() + 10
        while not Path(str(marker) + ".ready").exists():
            assert time.monotonic() < deadline, "the namespace listener did not start"
            assert listener.poll() is None, "the namespace listener died"
            time.sleep(0.02)
        # control: the listener is reachable from the host, so a miss below means a wall
        with socket.create_connection((SUBNET_PEER, 8080), timeout=2):
            pass
        deadline = time.monotonic() + 5
        while Netns(name, marker).hits() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        marker.write_text("")
        yield Netns(name, marker)
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", name)


def test_gateway_namespace_is_unreachable(runtimes: Runtimes, netns: Netns) -> None:
    """A listener the host itself can reach (the stand-in for a gateway or metadata
    service) gets nothing from the sandbox, over TCP or UDP."""
    with watched_session(runtimes()) as (session, _):
        outcome = run_json(session, f"""
import json, socket
out = {{}}
try:
    s = socket.create_connection(({SUBNET_PEER!r}, 8080), timeout=1)
    s.close()
    out['tcp'] = True
except OSError:
    out['tcp'] = False
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b'exfil', ({SUBNET_PEER!r}, 53))
    out['udp_sent'] = True
except OSError:
    out['udp_sent'] = False
print(json.dumps(out))
""")
    assert outcome["tcp"] is False
    time.sleep(0.1)
    assert netns.hits() == 0, "the sandbox reached the namespace listener"


# --- through a permitted host function -----------------------------------------------------

def test_exfiltration_through_llm_query_is_bounded_and_audited(runtimes: Runtimes) -> None:
    """Model code that pushes the whole context out through a permitted ``llm_query``
    gets out at most calls x max_prompt_chars characters, and every call, admitted or
    refused, is in the audit log."""
    lm = ScriptedLM(default="ok")
    rt = runtimes(lm=lm, budgets={"tree": {"calls": 5, "max_prompt_chars": 1000}})
    secret = "TOP-SECRET-" + "x" * 100_000
    with watched_session(rt, context=secret) as (session, _):
        result = session.exec(
            "sent, refused = 0, 0\n"
            "for i in range(0, len(context), 900):\n"
            "    try:\n"
            "        llm_query(context[i:i + 900]); sent += 1\n"
            "    except BudgetExceeded:\n"
            "        refused += 1\n"
            "        if refused > 20:\n"
            "            break\n"
            "try:\n"
            "    llm_query(context[:5000])\n"
            "except BudgetExceeded:\n"
            "    refused += 1\n"
            "print(sent, refused)\n")
        assert result.status == "ok", result.error
        sent, refused = map(int, result.stdout.split())
    assert sent == 5
    assert refused >= 21
    assert len(lm.prompts) == 5
    assert sum(len(p) for p in lm.prompts) <= 5 * 1000
    calls = events(rt, "host.call", function="llm_query")
    assert len([c for c in calls if c.get("outcome") == "ok"]) == 5
    assert len([c for c in calls if c.get("outcome") == "budget_exceeded"]) == refused
    assert events(rt, "limit.exceeded")
