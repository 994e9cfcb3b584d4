"""Python-level escapes: every known way to reach ``os`` from model code gains nothing.

In ``python`` code mode model code may simply ``import os``; the walls are the sandbox's,
not the language's. So each route below obtains the ``os`` module (class-hierarchy walks,
frame and generator introspection, traceback frames, format-string field access, builtins
recovery, the agent object behind the injected functions, import hooks) and then uses it
against the host: read a canary, write a host file, read the host process's environment,
signal a host process with the sandbox's own uid. Every attempt must fail, and the host
must be unharmed. In ``restricted`` mode (when the code gate is present) the same routes
must also gain nothing, whether the gate refuses them or not.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from rlmbox.runtime.runtime import Runtime

from .harness import HostTargets, Runtimes, events, watched_session

# Each route ends with a name ``o`` bound to the real os module.
ROUTES: dict[str, str] = {
    "plain-import": "import os as o",
    "subclasses-wrap-close": (
        "g = [c for c in ().__class__.__base__.__subclasses__()"
        " if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"
        "o = g['sys'].modules['os']"),
    "catch-warnings-builtins": (
        "cw = [c for c in object.__subclasses__() if c.__name__ == 'catch_warnings'][0]\n"
        "o = cw()._module.__builtins__['__import__']('os')"),
    "frame-f-back": "import sys\no = sys._getframe(1).f_globals['os']",
    "generator-gi-frame": (
        "def gen():\n    yield 1\n"
        "g = gen(); next(g)\n"
        "b = g.gi_frame.f_globals['__builtins__']\n"
        "imp = b['__import__'] if isinstance(b, dict) else b.__import__\n"
        "o = imp('os')"),
    "traceback-tb-frame": (
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\n"
        "while f.f_back is not None:\n    f = f.f_back\n"
        "o = f.f_globals['os']"),
    "format-string-field": (
        "import string\n"
        "wc = [c for c in ().__class__.__base__.__subclasses__()"
        " if c.__name__ == '_wrap_close'][0]\n"
        "o = string.Formatter().get_field('0.__init__.__globals__[sys]', [wc], {})[0]"
        ".modules['os']"),
    "host-error-traceback": (
        "try:\n    llm_query(12345)\nexcept Exception as e:\n    tb = e.__traceback__\n"
        "while tb.tb_next is not None:\n    tb = tb.tb_next\n"
        "o = tb.tb_frame.f_globals['os']"),
    "injected-closure-agent": (
        "agent = [c.cell_contents for c in llm_query.__closure__"
        " if type(c.cell_contents).__name__ == 'Agent'][0]\n"
        "o = type(agent).__init__.__globals__['os']"),
    "builtins-deleted-then-recovered": (
        "__builtins__ = None\n"
        "g = [c for c in ().__class__.__base__.__subclasses__()"
        " if c.__name__ == '_wrap_close'][0].__init__.__globals__\n"
        "__builtins__ = g['__builtins__']\n"
        "o = g['sys'].modules['os']"),
    "import-hook": (
        "import sys, importlib.abc, importlib.util\n"
        "class Hook(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        return importlib.util.spec_from_loader(name, self) if name == 'hostos' else None\n"
        "    def create_module(self, spec):\n        return None\n"
        "    def exec_module(self, module):\n        module.__dict__['os'] = __import__('os')\n"
        "sys.meta_path.insert(0, Hook())\n"
        "import hostos\no = hostos.os"),
}

# Run after a route: try the host with the os module obtained; report what was gained.
PAYLOAD = """
import json as _json
T = _json.loads({params!r})
gained = {{}}
def attempt(name, fn):
    try:
        gained[name] = bool(fn())
    except Exception:
        gained[name] = False
def read(path):
    fd = o.open(path, o.O_RDONLY)
    try:
        return o.read(fd, 1 << 16).decode(errors='replace')
    finally:
        o.close(fd)
attempt('read_canary', lambda: T['canary_text'] in read(T['canary']))
attempt('list_canary_dir', lambda: o.listdir(T['canary_dir']) is not None)
attempt('write_host_file', lambda: o.open(T['write_target'], o.O_WRONLY | o.O_CREAT, 0o644) >= 0)
attempt('append_canary', lambda: o.open(T['canary'], o.O_WRONLY | o.O_APPEND) >= 0)
attempt('host_environ', lambda: T['secret'] in read('/proc/%d/environ' % T['host_pid']))
attempt('own_environ', lambda: T['secret'] in str(o.environ))
attempt('signal_victim', lambda: o.kill(T['victim'], 15) is None)
attempt('signal_host', lambda: o.kill(T['host_pid'], 0) is None)
attempt('proc1_root_canary', lambda: T['canary_text'] in read('/proc/1/root' + T['canary']))
print(_json.dumps(gained))
"""


def _code_modes() -> list[Any]:
    restricted = pytest.param("restricted", marks=pytest.mark.skipif(
        importlib.util.find_spec("rlmbox.policies.codegate") is None,
        reason="the code gate (rlmbox.policies.codegate) is not on this branch yet"))
    return ["python", restricted]


def _runtime(runtimes: Runtimes, mode: str) -> Runtime:
    code: dict[str, Any] = {"mode": mode}
    return runtimes(code=code)


@pytest.mark.parametrize("mode", _code_modes())
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_reaching_os_gains_nothing(runtimes: Runtimes, host: HostTargets, route: str,
                                   mode: str) -> None:
    """Whatever route reaches ``os``, the host's files, environment and processes stay
    out of reach."""
    rt = _runtime(runtimes, mode)
    with watched_session(rt) as (session, _):
        result = session.exec(ROUTES[route] + "\n" + PAYLOAD.format(params=host.params()))
        if mode == "python":
            assert result.status == "ok", result.error
        if result.status == "ok":
            gained = json.loads(result.stdout.strip().splitlines()[-1])
            assert gained
            assert not any(gained.values()), f"{route} gained {gained}"
        else:
            assert result.status == "error"   # the code gate refused the route
        # the namespace and builtins are whole again for the next cell
        after = session.exec("print(len('abc'), sum([1, 2]))")
        assert (after.status, after.stdout) == ("ok", "3 3\n")
    host.assert_unharmed()


def test_renamed_host_function_is_still_decided_by_the_host(runtimes: Runtimes,
                                                            host: HostTargets) -> None:
    """Rewriting the function name inside an injected host function's closure reaches the
    host as a call to that name, which the policy denies; the tool never runs."""
    calls: list[str] = []

    def admin(command: str) -> str:
        calls.append(command)
        return "granted"

    rt = runtimes()
    with watched_session(rt, tools={"admin": admin}) as (session, _):
        result = session.exec(
            "cell = [c for c in llm_query.__closure__ if c.cell_contents == 'llm_query'][0]\n"
            "cell.cell_contents = 'tool.admin'\n"
            "try:\n    print('value', llm_query('rm -rf /'))\n"
            "except Exception as e:\n    print('refused', type(e).__name__)\n")
        assert result.status == "ok", result.error
        assert result.stdout.strip() == "refused PolicyDenied"
        assert not calls
        denied = events(rt, "host.call", function="tool.admin", outcome="denied")
        assert denied, "the refused call is not in the audit log"
        # the tampered function object persists in the sandbox; every use is still refused
        again = session.exec("try:\n    llm_query('hi')\nexcept PolicyDenied:\n    print('no')")
        assert again.stdout == "no\n"
        assert len(events(rt, "host.call", function="tool.admin", outcome="denied")) == 2
    host.assert_unharmed()


def test_patched_agent_cannot_fake_a_permitted_call(runtimes: Runtimes) -> None:
    """Patching the agent's ``call_host`` makes the model lie to itself, nothing more: the
    host never runs the tool and the audit log records no permitted call."""
    calls: list[str] = []

    def admin(command: str) -> None:
        calls.append(command)

    rt = runtimes()
    with watched_session(rt, tools={"admin": admin}) as (session, _):
        result = session.exec(
            "agent = [c.cell_contents for c in llm_query.__closure__"
            " if type(c.cell_contents).__name__ == 'Agent'][0]\n"
            "agent.call_host = lambda fn, *a, **k: 'granted'\n"
            "print(admin('x'), llm_query('y'))\n")
        assert result.status == "ok", result.error
        assert result.stdout == "granted granted\n"   # the model fooled only itself
    assert not calls
    assert not [r for r in events(rt, "host.call") if r.get("outcome") == "ok"]


def test_pickle_reduce_runs_only_inside(runtimes: Runtimes, host: HostTargets) -> None:
    """A ``__reduce__`` payload runs in the sandbox at most; as an answer it reaches the
    host as a string (the host never unpickles anything)."""
    rt = runtimes()
    target = host.write_target
    with watched_session(rt) as (session, _):
        result = session.exec(
            "import os, pickle\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            f"        return (os.system, ('touch {target}',))\n"
            "pickle.loads(pickle.dumps(Evil()))\n"
            "FINAL(Evil())\n")
        assert result.status == "ok", result.error
        assert isinstance(result.answer, str)
        assert "Evil object" in result.answer
    host.assert_unharmed()


def test_tampered_interpreter_state_harms_only_the_session(runtimes: Runtimes,
                                                           host: HostTargets) -> None:
    """Replacing ``json.dumps`` (which the agent's own frame encoder uses), ``sys.modules``
    entries and builtins breaks at most this session: the host kills it cleanly."""
    rt = runtimes()
    with watched_session(rt) as (session, _):
        result = session.exec(
            "import builtins, json, sys\n"
            "builtins.len = lambda x: 0\n"
            "sys.modules['struct'] = None\n"
            "json.dumps = lambda *a, **k: 'x' * 10\n"
            "print('tampered')\n")
        assert result.status in ("ok", "error", "killed")
        follow = (session.exec("print(1)") if session.state.value != "dead" else None)
        if follow is not None:
            assert follow.status in ("ok", "error", "killed")
    host.assert_unharmed()
    assert events(rt, "session.end")
