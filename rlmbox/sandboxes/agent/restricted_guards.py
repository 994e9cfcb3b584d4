"""Guard functions that RestrictedPython-transformed cells call, installed in the sandbox.

The host's code gate rewrites ``a.b`` to ``_getattr_(a, 'b')``, ``a[k]`` to
``_getitem_(a, k)``, ``print`` to ``_print_``, and so on; this module supplies those names
plus a reduced ``__builtins__`` whose ``__import__`` admits only the allowlist. Standard
library only: it is copied into every sandbox. Defence in depth, never the only boundary.
"""

from __future__ import annotations

import builtins
import operator
import types
from collections.abc import Callable, Iterable, Iterator

TYPE_CHECKING = False   # typing costs ~2 ms at every sandbox start: for mypy only
if TYPE_CHECKING:
    from typing import Any

_SAFE_BUILTINS = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable", "chr",
    "complex", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset",
    "hash", "hex", "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map",
    "max", "min", "next", "object", "oct", "ord", "pow", "range", "repr", "reversed",
    "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "True", "False",
    "None", "NotImplemented", "Ellipsis", "property", "staticmethod", "classmethod",
    "ArithmeticError", "AssertionError", "AttributeError", "BaseException", "EOFError",
    "Exception", "IndexError", "KeyError", "KeyboardInterrupt", "LookupError",
    "NameError", "NotImplementedError", "OverflowError", "RecursionError",
    "RuntimeError", "StopIteration", "TimeoutError", "TypeError", "UnicodeError",
    "ValueError", "ZeroDivisionError",
)

# str.format can reach attributes by name ("{0.__class__}"), bypassing _getattr_.
_BLOCKED_STR_ATTRS = frozenset({"format", "format_map"})

# (module, qualified name) of callables that look an attribute up from a string, or run a
# string as code, behind the code gate's back. Refused however they are reached: as an
# attribute of any module, or by ``from module import name``.
_BY_STRING = frozenset({
    ("operator", "attrgetter"), ("operator", "methodcaller"),
    ("string", "Formatter"),                                   # get_field, vformat, format
    ("typing", "get_type_hints"), ("typing", "ForwardRef"),    # eval of string annotations
    ("logging", "Formatter"), ("logging", "StrFormatStyle"),   # "{x.__class__}" style
    ("logging", "BufferingFormatter"), ("logging", "basicConfig"),
})

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}

_WRITABLE = (dict, list, set, bytearray)


_allowed_modules: frozenset[str] = frozenset()   # set by install(); one policy per sandbox


def _module_allowed(name: str) -> bool:
    return any(name == a or name.startswith(a + ".") for a in _allowed_modules)


def _reaches_by_string(value: Any) -> bool:
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    return isinstance(module, str) and isinstance(qualname, str) and (
        module, qualname) in _BY_STRING


# Attributes that lead from a generator, coroutine, function or traceback to frames, and
# from frames to every global of the agent (its os, sys): the names RestrictedPython's gate
# refuses as syntax, refused here when they arrive as strings (getattr(g, 'gi_' + 'frame')).
_INTROSPECTION_ATTRS = frozenset({
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin",
    "ag_frame", "ag_code", "ag_await", "f_back", "f_builtins", "f_code", "f_globals",
    "f_locals", "f_trace", "tb_frame", "tb_next", "co_code", "func_globals", "func_code"})
_INTERPRETER_INTERNALS = (types.FrameType, types.CodeType, types.TracebackType)


def _is_str(obj: Any) -> bool:
    """A str, or str or a subclass of it (``S.format`` is ``str.format``)."""
    return isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))


def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` that refuses private names, the str formatting back door, callables that
    reach attributes by string, and modules reached through other modules
    (``statistics.sys``) that are not on the allowlist."""
    if not isinstance(name, str):
        raise TypeError("attribute name must be a string")
    if name.startswith("_"):
        raise AttributeError(f"access to private attribute {name!r} is not allowed")
    if name in _BLOCKED_STR_ATTRS and _is_str(obj):
        raise AttributeError(f"str.{name} is not allowed in restricted code; use f-strings")
    if name in _INTROSPECTION_ATTRS:
        raise AttributeError(f"{name!r} reaches frames or code; not allowed in restricted code")
    return _checked(name, getattr(obj, name, *default))


def _checked(name: object, value: Any) -> Any:
    """Refuses a value restricted code must not hold, however it was reached."""
    if isinstance(value, _INTERPRETER_INTERNALS):
        raise AttributeError(  # noqa: TRY004 - refused like a missing attribute
            f"{name!r} is a frame, code or traceback object; not allowed in restricted code")
    if _reaches_by_string(value):
        raise AttributeError(f"{name!r} looks attributes up by string; not allowed in "
                             "restricted code")
    if isinstance(value, types.ModuleType) and not _module_allowed(value.__name__):
        raise AttributeError(f"module {value.__name__!r} is not on the import allowlist")
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except AttributeError:
        return False
    return True


def guarded_getitem(obj: Any, key: Any) -> Any:
    """``obj[key]``, with the same refusals as attribute access (``f_globals['os']``)."""
    value = obj[key]
    try:
        return _checked(key, value)
    except AttributeError as exc:
        raise KeyError(str(exc)) from None


def guarded_write(obj: Any) -> Any:
    """Allows writes to containers and to objects of classes the cell defined."""
    if isinstance(obj, _WRITABLE):
        return obj
    cls = obj if isinstance(obj, type) else type(obj)
    if getattr(cls, "__module__", None) == "__main__":
        return obj
    raise TypeError(f"restricted code may not modify {type(obj).__name__} objects")


def guarded_inplacevar(op: str, target: Any, value: Any) -> Any:
    try:
        return _INPLACE[op](target, value)
    except KeyError:
        raise TypeError(f"operator {op!r} is not allowed") from None


def unpack_sequence(it: Iterable[Any], spec: dict[str, Any],
                    getiter: Callable[[Any], Iterator[Any]]) -> list[Any]:
    """Unpacks ``a, (b, c) = it`` through the iteration guard, nested per ``spec``."""
    items = list(getiter(it))
    if len(items) >= spec["min_len"]:
        for index, child in spec["childs"]:
            items[index] = unpack_sequence(items[index], child, getiter)
    return items


def iter_unpack_sequence(it: Iterable[Any], spec: dict[str, Any],
                         getiter: Callable[[Any], Iterator[Any]]) -> Iterator[list[Any]]:
    for item in getiter(it):
        yield unpack_sequence(item, spec, getiter)


def apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


class PrintToStdout:
    """``_print_``: print goes to the real stdout (streamed by the agent) and is kept
    for the ``printed`` name."""

    def __init__(self, _getattr_: Any = None) -> None:
        self.parts: list[str] = []

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is None:
            sep, end = kwargs.get("sep", " "), kwargs.get("end", "\n")
            self.parts.append((sep if sep is not None else " ").join(map(str, objects))
                              + (end if end is not None else "\n"))
        builtins.print(*objects, **kwargs)

    def __call__(self) -> str:
        return "".join(self.parts)


def make_import(allowed_imports: frozenset[str]) -> Callable[..., Any]:
    real_import = builtins.__import__

    def guarded_import(name: str, globals: Any = None, locals: Any = None,
                       fromlist: Any = (), level: int = 0) -> Any:
        allowed = any(name == a or name.startswith(a + ".") for a in allowed_imports)
        if level != 0 or not allowed:
            raise ImportError(f"import of {name!r} is not allowed in restricted code")
        module = real_import(name, globals, locals, fromlist, level)
        for item in fromlist or ():
            if isinstance(item, str) and _reaches_by_string(getattr(module, item, None)):
                raise ImportError(f"{name}.{item} looks attributes up by string; not allowed "
                                  "in restricted code")
        return module
    return guarded_import


def restricted_builtins(allowed_imports: frozenset[str]) -> dict[str, Any]:
    table = {name: getattr(builtins, name) for name in _SAFE_BUILTINS}
    table.update(getattr=guarded_getattr, hasattr=guarded_hasattr,
                 __import__=make_import(allowed_imports), __build_class__=builtins.__build_class__,
                 __name__="builtins")
    return table


def install(namespace: dict[str, Any], allowed_imports: frozenset[str]) -> None:
    """Puts the guards and the reduced builtins into a cell namespace."""
    global _allowed_modules  # noqa: PLW0603 - one allowlist per sandbox process
    _allowed_modules = frozenset(allowed_imports)
    namespace.update({
        "__builtins__": restricted_builtins(allowed_imports),
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_write_": guarded_write,
        "_inplacevar_": guarded_inplacevar,
        "_unpack_sequence_": unpack_sequence,
        "_iter_unpack_sequence_": iter_unpack_sequence,
        "_apply_": apply,
        "_print_": PrintToStdout,
    })
