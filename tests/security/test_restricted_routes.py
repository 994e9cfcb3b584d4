"""Restricted code mode: no route reaches an attribute by a string the code gate never saw.

The gate rewrites ``a.b`` into a guarded ``_getattr_`` and refuses names that start with
``_``, but modules on the default import allowlist can look attributes up from a string
(``string.Formatter().get_field``, ``operator.attrgetter``, ``str.format`` through a
subclass) or evaluate a string as code (``typing.get_type_hints`` on a string annotation,
``functools.singledispatch``'s ``register``). Each route below prints ``ESCAPED`` only if
it reached ``().__class__`` or ``__mro__``; each must be refused, by the gate or a guard.
"""

from __future__ import annotations

import importlib.util

import pytest

from .harness import Runtimes, watched_session

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rlmbox.policies.codegate") is None,
                                reason="the code gate is not on this branch")

ROUTES: dict[str, str] = {
    "formatter-get_field": (
        "import string\n"
        "found = string.Formatter().get_field('0.__class__.__mro__', [()], {})[0]\n"
        "print('ESCAPED', found)"),
    "formatter-vformat": (
        "import string\n"
        "print('ESCAPED', string.Formatter().vformat('{0.__class__.__mro__}', [()], {}))"),
    "formatter-from-import": (
        "from string import Formatter\n"
        "print('ESCAPED', Formatter().format('{0.__class__.__mro__}', ()))"),
    "operator-attrgetter": (
        "import operator\n"
        "print('ESCAPED', operator.attrgetter('__class__.__mro__')(()))"),
    "operator-attrgetter-from-import": (
        "from operator import attrgetter\n"
        "print('ESCAPED', attrgetter('__class__.__mro__')(()))"),
    "operator-methodcaller": (
        "import operator\n"
        "print('ESCAPED', operator.methodcaller('__sizeof__')(()))"),
    "str-subclass-format": (
        "class S(str):\n    pass\n"
        "print('ESCAPED', S.format('{0.__class__.__mro__}', ()))"),
    "str-subclass-format_map": (
        "class S(str):\n    pass\n"
        "print('ESCAPED', S.format_map('{x.__class__.__mro__}', {'x': ()}))"),
    "str-subclass-instance-format": (
        "class S(str):\n    pass\n"
        "print('ESCAPED', S('{0.__class__.__mro__}').format(()))"),
    "typing-get_type_hints": (
        "import typing\n"
        "def f(x: '().__class__.__mro__[0]'):\n    pass\n"
        "print('ESCAPED', typing.get_type_hints(f))"),
    "typing-forward-ref-in-subscript": (
        "import typing\n"
        "def f(x: typing.List['().__class__.__mro__[0]']):\n    pass\n"
        "print('ESCAPED', typing.get_type_hints(f))"),
    "singledispatch-register": (
        "import functools\n"
        "@functools.singledispatch\ndef f(x):\n    return 0\n"
        "@f.register\ndef g(x: '().__class__.__mro__[0]'):\n    return 1\n"
        "if f(()) == 1:\n    print('ESCAPED', 'tuple registered from a string')"),
    "make_dataclass-type-hints": (
        "import dataclasses, typing\n"
        "C = dataclasses.make_dataclass('C', [('a', '().__class__.__mro__[0]')])\n"
        "print('ESCAPED', typing.get_type_hints(C))"),
}


def test_no_route_reaches_an_attribute_by_string(runtimes: Runtimes) -> None:
    """Every attribute-by-string or string-as-code route of the default allowlist is
    refused in restricted mode (gate or guard); honest code still runs."""
    rt = runtimes(code={"mode": "restricted"})
    escaped: dict[str, str] = {}
    with watched_session(rt) as (session, _):
        for name, code in ROUTES.items():
            result = session.exec(code)
            if "ESCAPED" in result.stdout:
                escaped[name] = result.stdout.strip()[:200]
            else:
                assert result.status == "error", (name, result)
        honest = session.exec(
            "import operator, string, typing\n"
            "def f(x: int) -> str:\n    return str(x)\n"
            "print(operator.itemgetter(1)([5, 6]), string.Template('$a').substitute(a=f(7)),"
            " typing.get_args(typing.List[int]))\n")
        assert (honest.status, honest.stdout) == ("ok", "6 7 (<class 'int'>,)\n"), honest
    assert not escaped, f"routes that reached a private attribute: {escaped}"
