"""The policy file schema and ``load_policy``: unknown keys refused, every error located.

A policy is immutable once loaded. ``load_policy`` either returns a complete, validated
``Policy`` or raises ``PolicyError`` listing every problem with its path and line, so a
session can never run under a half-loaded policy.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_core.core_schema import ValidationInfo

from rlmbox.errors import PolicyError
from rlmbox.policies.conditions import Condition
from rlmbox.policies.source import SourceMap, format_path, parse_yaml
from rlmbox.sandboxes.base import IsolationProperty

PRESETS: tuple[str, ...] = ("strict", "default", "dev", "process-fallback")

PosInt = Annotated[int, Field(strict=True, gt=0)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosFloat = Annotated[float, Field(strict=True, gt=0)]
NonNegFloat = Annotated[float, Field(strict=True, ge=0)]
Text = Annotated[str, Field(strict=True, max_length=4096)]
RuleId = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# A function name, or a pattern where '*' stands for any run of characters ("context.*").
FunctionPattern = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.*-]{1,128}$")]
FunctionName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")]
ModuleName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]  # noqa: E501

MiB = 1024 * 1024

# Parameter names of the built-in host functions, as the Session binds them. A rule on one
# of these functions may only constrain these arguments (a typo is an error, not a rule
# that silently never matches). Tools registered by callers are not checked.
KNOWN_ARGUMENTS: dict[str, frozenset[str]] = {
    "llm_query": frozenset({"prompt", "model", "system", "max_tokens", "temperature", "stop"}),
    "llm_query_batched": frozenset({"prompts", "model", "system", "max_tokens", "temperature",
                                    "stop"}),
    "rlm_query": frozenset({"prompt", "model", "max_tokens", "temperature", "stop"}),
    "rlm_query_batched": frozenset({"prompts", "model", "max_tokens", "temperature", "stop"}),
    "context.len": frozenset(),
    "context.read": frozenset({"start", "end"}),
    "context.search": frozenset({"pattern", "max_hits"}),
    "context.lines": frozenset({"start", "end"}),
    "context.documents": frozenset(),
    "context.document": frozenset({"doc_id"}),
    # host-initiated, never callable by model code: the caller moving files (Session.*_file)
    "files.write": frozenset({"path", "size"}),
    "files.read": frozenset({"path"}),
    "files.list": frozenset({"path"}),
}

# The budget name of a session's root-model completions (the RLM loop; not callable by code).
ROOT_LM = "root_lm"
# Functions that run an LM: only they spend tokens and money, only they take a prompt.
LM_FUNCTIONS = frozenset({"llm_query", "llm_query_batched", ROOT_LM})
PROMPTED_FUNCTIONS = LM_FUNCTIONS | {"rlm_query", "rlm_query_batched"}
_USAGE_BUDGETS = ("input_tokens", "output_tokens", "cost_usd")
# Functions whose calls run with LM parameters (``lm_calls``): rlm_query's go to its
# children's root loop.
PARAMETERISED_FUNCTIONS = PROMPTED_FUNCTIONS
# A child RLM's system prompt is its instructions (with root_lm's ``system`` first).
_NO_SYSTEM_PROMPT = frozenset({"rlm_query", "rlm_query_batched"})
MAX_STOP_SEQUENCES = 8
MAX_STOP_CHARS = 256
MAX_SYSTEM_CHARS = 65536

# Modules a restricted cell may import unless the policy says otherwise: pure computation.
DEFAULT_IMPORTS: frozenset[str] = frozenset({
    "re", "json", "math", "cmath", "collections", "itertools", "functools", "statistics",
    "string", "textwrap", "datetime", "heapq", "bisect", "difflib", "decimal", "fractions",
    "operator", "unicodedata", "dataclasses", "enum", "typing", "copy", "pprint",
})


BackendName = Literal["process", "docker", "e2b"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limits(_Frozen):
    """Resource limits of one sandbox; all finite (there is no 'unlimited')."""

    memory_mb: Annotated[int, Field(strict=True, gt=0, le=1024 * 1024)] = 1024
    cpu_seconds: Annotated[int, Field(strict=True, gt=0, le=7 * 24 * 3600)] = 600
    cpu_cores: Annotated[float, Field(strict=True, gt=0, le=1024)] = 1.0
    pids: Annotated[int, Field(strict=True, gt=0, le=1_000_000)] = 128
    open_files: Annotated[int, Field(strict=True, gt=0, le=1_000_000)] = 256
    file_size_mb: Annotated[int, Field(strict=True, gt=0, le=1024 * 1024)] = 64
    disk_mb: Annotated[int, Field(strict=True, gt=0, le=1024 * 1024)] = 256
    # one file moved in or out by Session.write_file / read_file (and the daemon's routes)
    file_transfer_mb: Annotated[int, Field(strict=True, gt=0, le=1024 * 1024)] = 64
    output_bytes: Annotated[int, Field(strict=True, gt=0, le=1024 * MiB)] = MiB
    # a cell whose output (kept and dropped, both streams) passes this is stopped: a print
    # loop must not run for its whole wall time; None means 16 x output_bytes
    output_stop_bytes: Annotated[int, Field(strict=True, gt=0)] | None = None
    cell_timeout_s: Annotated[float, Field(strict=True, gt=0, le=7 * 24 * 3600)] = 60.0
    session_timeout_s: Annotated[float, Field(strict=True, gt=0, le=30 * 24 * 3600)] = 3600.0
    interrupt_grace_s: Annotated[float, Field(strict=True, gt=0, le=600)] = 2.0
    # a tool call still running after this is abandoned and fails in the sandbox
    tool_timeout_s: Annotated[float, Field(strict=True, gt=0, le=7 * 24 * 3600)] = 30.0


    @model_validator(mode="after")
    def _stop_after_the_cap(self) -> Limits:
        if self.output_stop_bytes is not None and self.output_stop_bytes < self.output_bytes:
            raise ValueError(f"output_stop_bytes ({self.output_stop_bytes}) must be at least "
                             f"output_bytes ({self.output_bytes})")
        return self

    @property
    def effective_output_stop_bytes(self) -> int:
        """The output after which a cell is stopped (the default: 16 x output_bytes)."""
        return self.output_stop_bytes or 16 * self.output_bytes


# E2B names: a template (name or id), metadata keys and values the API accepts
TemplateName = Annotated[str, Field(strict=True, pattern=r"^[a-z0-9][a-z0-9._:-]{0,127}$")]
MetadataKey = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MetadataValue = Annotated[str, Field(strict=True, max_length=256)]
RESERVED_METADATA_PREFIX = "org.rlmbox."   # rlmbox's own tags: owner, session, tenant
E2B_MAX_TIMEOUT_S = 24 * 3600              # E2B's longest sandbox lifetime (Pro)


class E2BIsolation(_Frozen):
    """The ``e2b`` backend's settings. No credentials here: the API key and domain come
    from the host's environment (docs/backends-e2b.md), never from a policy file."""

    template: TemplateName = "rlmbox"
    timeout_s: Annotated[int, Field(strict=True, gt=0, le=E2B_MAX_TIMEOUT_S)] = 3600
    cpu: PosInt = 2             # what the template must give: less is refused at create
    memory_mb: PosInt = 512
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=16)
    internet: Annotated[bool, Field(strict=True)] = False   # 'yes' is an error, not True

    @field_validator("metadata")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(k for k in value if k.startswith(RESERVED_METADATA_PREFIX))
        if reserved:
            raise PydanticCustomError(
                "metadata", "metadata keys starting with '{prefix}' are rlmbox's own tags: "
                "{keys}", {"prefix": RESERVED_METADATA_PREFIX, "keys": ", ".join(reserved)})
        return value


class Isolation(_Frozen):
    """Which backend runs the sandbox and which properties it must prove (fail closed)."""

    backend: BackendName = "process"
    runtime: Literal["runc", "runsc"] | None = None
    image: Text | None = None
    require: frozenset[IsolationProperty] = frozenset()
    # The backends a daemon client may ask for instead of ``backend`` (the operator's
    # choice, never the client's); empty means exactly ``backend``.
    allowed_backends: frozenset[BackendName] = frozenset()
    e2b: E2BIsolation | None = None   # the e2b backend's settings (defaults when absent)

    @property
    def e2b_settings(self) -> E2BIsolation:
        """The ``e2b`` section, or its defaults."""
        return self.e2b if self.e2b is not None else E2BIsolation()

    @property
    def permitted_backends(self) -> frozenset[str]:
        """``allowed_backends``, or just ``backend`` when none are listed."""
        return self.allowed_backends or frozenset({self.backend})

    @field_validator("runtime")
    @classmethod
    def _runtime_needs_docker(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("backend") != "docker":
            raise PydanticCustomError(
                "runtime", "runtime '{runtime}' needs backend 'docker'", {"runtime": value})
        return value

    @field_validator("e2b")
    @classmethod
    def _e2b_needs_e2b(cls, value: E2BIsolation | None,
                       info: ValidationInfo) -> E2BIsolation | None:
        backend = info.data.get("backend")
        allowed = info.data.get("allowed_backends") or frozenset()
        if value is not None and backend != "e2b" and "e2b" not in allowed:
            raise PydanticCustomError(
                "e2b", "an e2b section needs backend 'e2b' (or 'e2b' in allowed_backends)", {})
        # the probe VM has internet off: checked against it, this pair would pass and then
        # run VMs with internet on, so it is refused here, where both are known
        if value is not None and value.internet and "network_none" in (
                info.data.get("require") or frozenset()):
            raise PydanticCustomError(
                "e2b", "e2b.internet: true turns the VM's internet on, which "
                "require: [network_none] forbids; drop one of the two", {})
        return value

    @field_validator("allowed_backends")
    @classmethod
    def _allowed_includes_own(cls, value: frozenset[str],
                              info: ValidationInfo) -> frozenset[str]:
        own = info.data.get("backend")
        if value and own not in value:
            raise PydanticCustomError(
                "allowed_backends", "allowed_backends must include the policy's own backend "
                "'{backend}'", {"backend": own})
        return value


class DocumentAccess(_Frozen):
    """Which documents of a multi-document context a gated context may read (globs)."""

    allow: tuple[Text, ...] = ("*",)
    deny: tuple[Text, ...] = ()


class ContextPolicy(_Frozen):
    """How model code sees the context; quotas apply to ``gated`` mode."""

    mode: Literal["variable", "gated"] = "variable"
    max_bytes_per_call: PosInt = MiB
    max_bytes_per_session: PosInt = 1024 * MiB
    max_search_hits: PosInt = 1000
    documents: DocumentAccess = DocumentAccess()


# A requirement pip understands without fetching anything but an index's packages: a name,
# optional extras and version clauses. No URLs, paths, options or environment markers, so a
# policy cannot point the build at a host file or smuggle a pip flag.
_CLAUSE = r"(==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!-]{1,50}"
Requirement = Annotated[str, Field(strict=True, pattern=(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9._,-]{1,100}\])?"
    rf"( ?{_CLAUSE}(, ?{_CLAUSE}){{0,5}})?$"))]


class EnvironmentPolicy(_Frozen):
    """Python packages model code may import, installed once by ``rlmbox env build``
    into a read-only directory keyed by the hash of this recipe; never at run time."""

    packages: tuple[Requirement, ...] = ()


EnvName = Annotated[str, Field(strict=True, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# Prefixes a session's environment may not set: the interpreter runs isolated (-I) and the
# loader's variables reach only processes model code starts, so such a key would do nothing
# for the REPL itself, or something different per backend; refused rather than ignored.
RESERVED_ENV_PREFIXES = ("LD_", "PYTHON", "RLMBOX_")


class SessionSetup(_Frozen):
    """Environment variables and working directory of model code in every session. The
    host's own environment never enters a sandbox; these are the only additions."""

    env: dict[EnvName, Annotated[str, Field(strict=True, max_length=4096)]] = Field(
        default_factory=dict, max_length=64)
    cwd: Annotated[str, Field(strict=True, pattern=r"^/[A-Za-z0-9_./-]{0,255}$")] | None = None

    @field_validator("env")
    @classmethod
    def _not_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.upper().startswith(RESERVED_ENV_PREFIXES):
                raise PydanticCustomError(
                    "reserved_env", "'{name}' is reserved: variables starting with {prefixes} "
                    "would not apply to the REPL (it runs isolated) or would differ per backend",
                    {"name": name, "prefixes": ", ".join(RESERVED_ENV_PREFIXES)})
        return value

    @field_validator("cwd")
    @classmethod
    def _no_dot_segments(cls, value: str | None) -> str | None:
        if value is not None and any(part in (".", "..") for part in value.split("/")):
            raise PydanticCustomError("cwd", "cwd must be a normalised absolute path", {})
        return value


class CodePolicy(_Frozen):
    """Plain Python, or cells checked and transformed by RestrictedPython on the host."""

    mode: Literal["python", "restricted"] = "python"
    allowed_imports: frozenset[ModuleName] = DEFAULT_IMPORTS


class TreeBudget(_Frozen):
    """Budgets of a whole session tree (root and every ``rlm_query`` descendant)."""

    calls: NonNegInt = 1000
    input_tokens: NonNegInt = 10_000_000
    output_tokens: NonNegInt = 1_000_000
    cost_usd: NonNegFloat = 50.0
    max_depth: NonNegInt = 3
    max_concurrent: PosInt = 16
    max_prompt_chars: PosInt = 1_000_000


class FunctionBudget(_Frozen):
    """Extra caps for one function; an omitted field means only the tree budget applies."""

    calls: NonNegInt | None = None
    input_tokens: NonNegInt | None = None
    output_tokens: NonNegInt | None = None
    cost_usd: NonNegFloat | None = None
    max_depth: NonNegInt | None = None
    max_concurrent: PosInt | None = None
    max_prompt_chars: PosInt | None = None


class Budgets(_Frozen):
    """Tree-wide budgets plus optional per-function caps (keyed by exact function name).

    Every key accepted here is enforced, so a key that could never bind is refused: a
    function that does not exist, a token or cost cap on a function that runs no LM, a
    prompt cap on one that takes no prompt.
    """

    tree: TreeBudget = TreeBudget()
    functions: dict[FunctionName, FunctionBudget] = Field(default_factory=dict)

    @field_validator("functions")
    @classmethod
    def _enforceable(cls, value: dict[str, FunctionBudget]) -> dict[str, FunctionBudget]:
        for name, budget in value.items():
            if name not in KNOWN_ARGUMENTS and name != ROOT_LM and not name.startswith("tool."):
                raise PydanticCustomError(
                    "unknown_function", "no host function named '{name}' (built-ins: "
                    "{known}; registered tools are 'tool.<name>')",
                    {"name": name, "known": ", ".join(sorted({*KNOWN_ARGUMENTS, ROOT_LM}))})
            usage = [k for k in _USAGE_BUDGETS if getattr(budget, k) is not None]
            if usage and name not in LM_FUNCTIONS:
                raise PydanticCustomError(
                    "unenforceable", "'{name}' runs no LM, so {keys} can never bind "
                    "(token and cost budgets apply to {lm})",
                    {"name": name, "keys": ", ".join(usage),
                     "lm": ", ".join(sorted(LM_FUNCTIONS))})
            if budget.max_prompt_chars is not None and name not in PROMPTED_FUNCTIONS:
                raise PydanticCustomError(
                    "unenforceable", "'{name}' takes no prompt, so max_prompt_chars can "
                    "never bind", {"name": name})
        return value


StopSequence = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_STOP_CHARS)]


class LMCallSettings(_Frozen):
    """The parameters of one function's LM calls: ``max_tokens`` is a cap (a call asking
    for more, or for none, runs with the cap); ``temperature`` and ``stop`` are defaults
    the caller may replace; ``system`` comes first in every call's system prompt."""

    system: Annotated[str, Field(strict=True, min_length=1,
                                 max_length=MAX_SYSTEM_CHARS)] | None = None
    max_tokens: Annotated[int, Field(strict=True, gt=0, le=10_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    stop: tuple[StopSequence, ...] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)

    @field_validator("temperature", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            raise PydanticCustomError("float_type", "Input should be a valid number", {})
        return value


class Rule(_Frozen):
    """``permit`` or ``forbid`` calls to ``function`` whose arguments satisfy ``when``."""

    id: RuleId
    effect: Literal["permit", "forbid"]
    function: FunctionPattern
    when: dict[Annotated[str, Field(strict=True, max_length=128)], Condition] = Field(
        default_factory=dict)
    description: Text = ""

    @field_validator("function")
    @classmethod
    def _known_function(cls, value: str) -> str:
        """A name without a glob must be a host function: a typo would never match."""
        if "*" in value or value in KNOWN_ARGUMENTS or value == ROOT_LM or \
                value.startswith("tool."):
            return value
        known = sorted({*KNOWN_ARGUMENTS, ROOT_LM})
        close = difflib.get_close_matches(value, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise PydanticCustomError(
            "unknown_function", "no host function named '{name}'{hint}; built-ins: {known}; "
            "registered tools are 'tool.<name>'",
            {"name": value, "hint": hint, "known": ", ".join(known)})

    @field_validator("when")
    @classmethod
    def _known_arguments(cls, value: dict[str, Condition],
                         info: ValidationInfo) -> dict[str, Condition]:
        known = KNOWN_ARGUMENTS.get(str(info.data.get("function")))
        if known is not None:
            for arg in value:
                if arg not in known:
                    raise PydanticCustomError(
                        "unknown_argument",
                        "unknown argument '{arg}' of {function} (known: {known})",
                        {"arg": arg, "function": info.data.get("function"),
                         "known": ", ".join(sorted(known)) or "none"})
        return value


class Policy(_Frozen):
    """A complete, validated policy. Build it with ``load_policy``."""

    version: Literal[1] = 1
    name: Annotated[str, Field(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "unnamed"
    description: Text = ""
    mode: Literal["enforce", "audit"] = "enforce"
    limits: Limits = Limits()
    isolation: Isolation = Isolation()
    context: ContextPolicy = ContextPolicy()
    code: CodePolicy = CodePolicy()
    environment: EnvironmentPolicy = EnvironmentPolicy()
    session: SessionSetup = SessionSetup()
    budgets: Budgets = Budgets()
    lm_calls: dict[FunctionName, LMCallSettings] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    _sha256: str = PrivateAttr(default="")

    @field_validator("lm_calls")
    @classmethod
    def _lm_functions(cls, value: dict[str, LMCallSettings]) -> dict[str, LMCallSettings]:
        """Only functions that run an LM take settings, so every accepted key binds."""
        known = sorted(PARAMETERISED_FUNCTIONS)
        for name, settings in value.items():
            if name not in PARAMETERISED_FUNCTIONS:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise PydanticCustomError(
                    "unenforceable", "'{name}' runs no LM call{hint}; lm_calls takes "
                    "{known}", {"name": name, "hint": hint, "known": ", ".join(known)})
            if name in _NO_SYSTEM_PROMPT and settings.system is not None:
                raise PydanticCustomError(
                    "unenforceable", "'{name}' takes no system prompt: a child RLM's is "
                    "its instructions, after root_lm's 'system'", {"name": name})
        return value

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        seen: set[str] = set()
        for index, rule in enumerate(value):
            if rule.id in seen:
                raise PydanticCustomError(
                    "duplicate_id", "duplicate rule id '{id}'", {"id": rule.id, "index": index})
            seen.add(rule.id)
        return value

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Self:
        """A copy; one that changes anything no longer carries its source's digest (it
        would name, in the audit log and in shared runtimes' keys, a policy not in force)."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._sha256 = ""
        return copy

    @property
    def sha256(self) -> str:
        """SHA-256 of the source bytes (or of canonical JSON for a policy built in code)."""
        if not self._sha256:
            self._sha256 = hashlib.sha256(canonical_json(self)).hexdigest()
        return self._sha256


def canonical_json(policy: Policy) -> bytes:
    """Sorted-key JSON of the policy: equal policies give equal bytes."""
    data = policy.model_dump(mode="json", by_alias=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=sorted).encode()


def _data_path(loc: list[str | int]) -> list[str | int]:
    """Drops the union-branch and validator names pydantic puts into error locations."""
    return [p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]


def _is_type_error(kind: str) -> bool:
    """A value of the wrong type or outside an enumeration: showing it says what was read."""
    return kind.endswith(("_type", "_parsing")) or kind in ("literal_error", "enum")


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_at(loc: list[str | int]) -> type[BaseModel] | None:
    """The model class whose fields sit at ``loc`` inside a policy (for suggestions)."""
    current: type[BaseModel] | None = Policy
    keyed = False   # the last field was a mapping: this part is one of its keys
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int) or keyed:
            keyed = False
            continue   # a list index or a mapping's key: the item model was unwrapped
        field = current.model_fields.get(part)
        current = _first_model(field.annotation) if field is not None else None
        keyed = field is not None and typing.get_origin(field.annotation) is dict
    return current


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _did_you_mean(name: str, loc: list[str | int]) -> str:
    model = _model_at(loc)
    if model is None:
        return ""
    fields = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(name, fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _locate(error: Any, source: SourceMap | None) -> str:
    loc: list[str | int] = list(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        message = f"unknown field '{loc[-1]}'{_did_you_mean(str(loc[-1]), _data_path(loc[:-1]))}"
        where, loc = loc, loc[:-1]
    elif kind == "unknown_argument":
        message = error["msg"]
        where = [*loc, ctx["arg"]]
    elif kind == "duplicate_id":
        message = error["msg"]
        where = [*loc, ctx["index"], "id"]
        loc = where
    else:
        message = error["msg"]
        if _is_type_error(kind) and not isinstance(error.get("input"), dict | list):
            message += f", got {_clip(error.get('input'))}"
        where = loc
    # pydantic adds union branch and validator names to loc; they are not data paths
    loc, where = _data_path(loc), _data_path(where)
    line = source.line_of(where) if source is not None else None
    suffix = f" (line {line})" if line is not None else ""
    return f"{format_path(loc)}: {message}{suffix}"


def policy_from_data(data: Any, *, source: SourceMap | None = None,
                     origin: str = "<data>", sha256: str | None = None) -> Policy:
    """Validates plain data (parsed YAML or a dict) into a ``Policy``.

    Raises:
        PolicyError: listing every problem with its path (and line, given ``source``).
    """
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy must be a mapping",
                          ["(top level): expected a mapping of sections"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        errors = sorted({_locate(e, source) for e in exc.errors()})
        raise PolicyError(f"{origin}: policy has {len(errors)} error(s)", errors) from exc
    policy._sha256 = sha256 or ""
    return policy


def load_policy_text(text: bytes | str, *, origin: str = "<string>") -> Policy:
    """Loads a policy from YAML text; ``sha256`` is the digest of these exact bytes."""
    raw = text.encode() if isinstance(text, str) else text
    try:
        data, source = parse_yaml(raw)
    except PolicyError as exc:
        raise PolicyError(f"{origin}: {exc}", exc.errors) from exc
    return policy_from_data(data, source=source, origin=origin,
                            sha256=hashlib.sha256(raw).hexdigest())


def preset_text(name: str) -> bytes:
    """The YAML source of a shipped preset."""
    if name not in PRESETS:
        raise PolicyError(f"no preset named '{name}'", [f"(top level): presets are {PRESETS}"])
    return _shipped_preset(name)


@functools.cache
def _shipped_preset(name: str) -> bytes:
    """Read once per process: a shipped preset is package data, and an rlms environment
    made per completion names its preset each time (the read, run cold there, cost its
    set-up ~0.1-0.2 ms). A policy file's path is read at every load, as it may change."""
    return (resources.files("rlmbox.policies") / "presets" / f"{name}.yaml").read_bytes()


def load_policy(spec: Policy | str | Path) -> Policy:
    """Loads a policy from a preset name, a YAML file path, or returns a ``Policy`` as is.

    Raises:
        PolicyError: the file cannot be read or the policy is invalid; ``errors`` lists
            every problem as ``path: message (line N)``.
    """
    if isinstance(spec, Policy):
        return spec
    raw, origin = policy_source(spec)
    return load_policy_text(raw, origin=origin)


def policy_source(spec: str | Path) -> tuple[bytes, str]:
    """The YAML bytes a preset name or a policy file path names, and where they came from
    (read without validating: a cache keyed by their digest skips the parse).

    Raises:
        PolicyError: the file cannot be read.
    """
    if isinstance(spec, str) and spec in PRESETS:
        return preset_text(spec), f"preset '{spec}'"
    if not isinstance(spec, str | Path):
        raise PolicyError(f"cannot load a policy from {type(spec).__name__}",
                          ["(top level): expected a preset name, a path or a Policy"])
    path = Path(spec)
    try:
        with path.open("rb") as handle:
            raw = handle.read(2 * 1024 * 1024)
    except OSError as exc:
        hint = f"; presets are {', '.join(PRESETS)}" if isinstance(spec, str) else ""
        raise PolicyError(f"cannot read policy {str(path)!r}: {exc.strerror}{hint}") from exc
    return raw, str(path)
