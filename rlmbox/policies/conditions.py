"""Argument conditions of a rule: exact value, one-of set, numeric bounds, length, regex.

A condition is a conjunction of its clauses. Each clause compares one JSON type:
``equals``/``in`` any scalar (type-strict: ``1 != "1" != True``), ``min``/``max`` numbers
(not booleans, not NaN), ``min_length``/``max_length`` and ``regex`` strings. A value of
another type is *incomparable*: the clause neither holds nor fails, and the caller says
what doubt means (a permit does not match, a forbid does: fail closed).

Regexes are compiled at load time and guarded against catastrophic backtracking three ways
(documented in docs/policy-reference.md): the pattern is at most ``MAX_REGEX_CHARS`` long;
nested quantifiers (``(a+)+``), alternations inside a quantifier (``(a|aa)*``) and more
than two unbounded quantifiers are refused; and only values up to ``MAX_REGEX_SUBJECT``
characters are matched (a longer value is incomparable, like another type). ``.`` matches
a newline too (``re.DOTALL``), so a forbid on ``.*secret.*`` holds across lines.
"""

from __future__ import annotations

import importlib
import math
import re
from typing import Annotated, Any, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

Scalar = Annotated[str, Field(strict=True)] | Annotated[bool, Field(strict=True)] | Annotated[
    int, Field(strict=True)] | Annotated[float, Field(strict=True)] | None
Number = Annotated[int, Field(strict=True)] | Annotated[float, Field(strict=True)]
Length = Annotated[int, Field(strict=True, ge=0)]

MAX_REGEX_CHARS = 256
MAX_REGEX_SUBJECT = 4096
MAX_SET_SIZE = 1024
MAX_UNBOUNDED_REPEATS = 2      # worst case is then O(n^2) in the subject length

_sre: Any = importlib.import_module("re._parser")   # no public API exposes the parse tree
_REPEATS = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)} - {None}


def _repeat_problem(tree: Any, inside_repeat: bool = False) -> tuple[str | None, int]:
    """Finds shapes that backtrack badly; returns (problem or None, unbounded repeats seen).

    Refused: a quantifier or an alternation inside an unbounded quantifier (``(a+)+``,
    ``(a|aa)*``). Counted: unbounded quantifiers, so the caller can cap the polynomial
    cost of sequences like ``.*a.*b``.
    """
    count = 0
    for op, arg in tree:
        sub: Any = None
        if op in _REPEATS:
            _low, high, sub = arg
            unbounded = high == _sre.MAXREPEAT or high > 64
            if inside_repeat and high > 1:
                return "nested quantifiers (like '(a+)+')", count
            count += unbounded
            problem, inner = _repeat_problem(sub, inside_repeat or unbounded)
        elif op is _sre.SUBPATTERN:
            problem, inner = _repeat_problem(arg[-1], inside_repeat)
        elif op is _sre.BRANCH:
            if inside_repeat:
                return "an alternation inside a quantifier (like '(a|aa)*')", count
            problem, inner = None, 0
            for branch in arg[1]:
                problem, more = _repeat_problem(branch, inside_repeat)
                inner = max(inner, more)
                if problem:
                    break
        else:
            continue
        count += inner
        if problem:
            return problem, count
    return None, count


def compile_guarded(pattern: str) -> re.Pattern[str]:
    """Compiles a policy regex or raises ``ValueError`` saying why it is refused."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise ValueError(f"regex longer than {MAX_REGEX_CHARS} characters")
    try:
        tree = _sre.parse(pattern)
        # DOTALL: a forbid must not be dodged by a newline (a PEM key spans lines)
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from exc
    problem, unbounded = _repeat_problem(tree)
    if problem:
        raise ValueError(f"{problem} can backtrack catastrophically; rewrite the regex")
    if unbounded > MAX_UNBOUNDED_REPEATS:
        raise ValueError(f"more than {MAX_UNBOUNDED_REPEATS} unbounded quantifiers "
                         "('*', '+', '{n,}') make matching slow; rewrite the regex")
    return compiled


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: object, b: object) -> bool:
    """Equality that keeps bool, int and str apart (``True != 1``, ``1 != '1'``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


class Condition(BaseModel):
    """Constraints on one argument; every clause given must hold.

    In YAML a bare scalar is shorthand for ``{equals: value}`` and a bare list for
    ``{in: [...]}``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    equals: Scalar = None
    one_of: tuple[Scalar, ...] | None = Field(default=None, alias="in", max_length=MAX_SET_SIZE)
    min: Number | None = None
    max: Number | None = None
    min_length: Length | None = None
    max_length: Length | None = None
    regex: Annotated[str, Field(strict=True)] | None = None

    _compiled: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            return {"in": list(data)}
        if data is None or isinstance(data, str | int | float | bool):
            return {"equals": data}
        return data

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_guarded(value)
            except ValueError as exc:
                raise PydanticCustomError("regex", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _check_bounds(self) -> Condition:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_condition", "condition has no clauses")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("bounds", "min is greater than max")
        if (self.min_length is not None and self.max_length is not None
                and self.min_length > self.max_length):
            raise PydanticCustomError("bounds", "min_length is greater than max_length")
        if self.regex is not None:
            self._compiled = compile_guarded(self.regex)
        return self

    def matches(self, value: object, *, unsure: bool = False) -> bool:
        """True if a single scalar argument value satisfies every clause.

        A clause that fails makes it False. Otherwise, ``unsure`` is returned when some
        clause cannot compare the value (another type, NaN, a string too long for the
        regex): the engine passes False for permits and True for forbids, so doubt denies.
        """
        if "equals" in self.model_fields_set and not _same(value, self.equals):
            return False
        if self.one_of is not None and not any(_same(value, c) for c in self.one_of):
            return False
        verdicts = (self._in_bounds(value), self._length_ok(value), self._regex_ok(value))
        if False in verdicts:
            return False
        return unsure if None in verdicts else True

    def _in_bounds(self, value: object) -> bool | None:
        if self.min is None and self.max is None:
            return True
        if not _is_number(value) or math.isnan(cast(float, value)):
            return None
        number = cast(float, value)
        return ((self.min is None or number >= self.min)
                and (self.max is None or number <= self.max))

    def _length_ok(self, value: object) -> bool | None:
        if self.min_length is None and self.max_length is None:
            return True
        if not isinstance(value, str):
            return None
        return ((self.min_length is None or len(value) >= self.min_length)
                and (self.max_length is None or len(value) <= self.max_length))

    def _regex_ok(self, value: object) -> bool | None:
        if self._compiled is None:
            return True
        if not isinstance(value, str) or len(value) > MAX_REGEX_SUBJECT:
            return None
        return self._compiled.fullmatch(value) is not None
