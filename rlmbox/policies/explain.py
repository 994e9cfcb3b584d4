"""Policies in plain words (``rlmbox policy explain``) and warnings (``policy check``)."""

from __future__ import annotations

from rlmbox.policies.conditions import Condition
from rlmbox.policies.engine import function_pattern
from rlmbox.policies.model import LMCallSettings, Policy, Rule


def _condition_words(arg: str, cond: Condition) -> str:
    parts: list[str] = []
    if "equals" in cond.model_fields_set:
        parts.append(f"is {cond.equals!r}")
    if cond.one_of is not None:
        parts.append(f"is one of {', '.join(repr(v) for v in cond.one_of)}")
    if cond.min is not None:
        parts.append(f">= {cond.min}")
    if cond.max is not None:
        parts.append(f"<= {cond.max}")
    if cond.min_length is not None:
        parts.append(f"has at least {cond.min_length} characters")
    if cond.max_length is not None:
        parts.append(f"has at most {cond.max_length} characters")
    if cond.regex is not None:
        parts.append(f"fully matches /{cond.regex}/")
    return f"{arg} {' and '.join(parts)}"


def rule_words(rule: Rule) -> str:
    verb = "permits" if rule.effect == "permit" else "FORBIDS"
    target = "every function" if rule.function == "*" else f"calls to {rule.function}"
    when = " and ".join(_condition_words(a, c) for a, c in sorted(rule.when.items()))
    return f"[{rule.id}] {verb} {target}" + (f" when {when}" if when else "")


def explain(policy: Policy) -> list[str]:
    """What the policy permits, one statement per line."""
    lim, iso, ctx, code, tree = (policy.limits, policy.isolation, policy.context,
                                 policy.code, policy.budgets.tree)
    lines = [f"Policy '{policy.name}' (sha256 {policy.sha256[:16]}...), mode {policy.mode}"
             + (": decisions are recorded but NOT enforced" if policy.mode == "audit" else "")]
    lines.append("Anything not permitted below is denied; a matching forbid beats any permit.")
    lines += ["  " + rule_words(r) for r in sorted(policy.rules, key=lambda r: r.id)]
    if not any(r.effect == "permit" for r in policy.rules):
        lines.append("  (no permit rules: every host call is denied)")
    lines.append(f"Sandbox: backend {iso.backend}" + (f", runtime {iso.runtime}" if iso.runtime
                 else "") + (", requires " + ", ".join(sorted(iso.require)) if iso.require
                             else ", no isolation property required"))
    lines.append(f"Limits: {lim.memory_mb} MB memory, {lim.pids} processes, "
                 f"{lim.cell_timeout_s:g} s per cell, {lim.session_timeout_s:g} s per session, "
                 f"{lim.tool_timeout_s:g} s per tool call, "
                 f"{lim.output_bytes} output bytes per cell and stream, {lim.disk_mb} MB disk")
    lines.append(f"Budgets for the whole session tree: {tree.calls} calls, "
                 f"{tree.input_tokens} input / {tree.output_tokens} output tokens, "
                 f"${tree.cost_usd:g}, recursion depth {tree.max_depth}, "
                 f"{tree.max_concurrent} concurrent calls, prompts up to "
                 f"{tree.max_prompt_chars} characters")
    for name, budget in sorted(policy.budgets.functions.items()):
        caps = ", ".join(f"{k} {v}" for k, v in budget.model_dump().items() if v is not None)
        lines.append(f"  {name}: {caps}")
    for name, settings in sorted(policy.lm_calls.items()):
        lines.append(f"LM calls of {name}: {_lm_words(settings)}")
    if ctx.mode == "gated":
        lines.append(f"Context: gated; each read is decided: at most {ctx.max_bytes_per_call} "
                     f"bytes per call, {ctx.max_bytes_per_session} per session, "
                     f"{ctx.max_search_hits} search hits; documents allowed "
                     f"{list(ctx.documents.allow)}, denied {list(ctx.documents.deny)}")
    else:
        lines.append("Context: a plain variable inside the sandbox (reads are not gated)")
    if code.mode == "restricted":
        lines.append("Code: checked by RestrictedPython on the host (defence in depth); "
                     f"imports allowed: {', '.join(sorted(code.allowed_imports))}")
    else:
        lines.append("Code: plain Python; the sandbox is the boundary")
    return lines


def _lm_words(settings: LMCallSettings) -> str:
    words = []
    if settings.max_tokens is not None:
        words.append(f"at most {settings.max_tokens} output tokens each (larger asks are cut)")
    if settings.temperature is not None:
        words.append(f"temperature {settings.temperature:g} unless the caller names one")
    if settings.stop is not None:
        words.append(f"stop at {list(settings.stop)} unless the caller names others")
    if settings.system is not None:
        words.append(f"a {len(settings.system)}-character system prompt first")
    return "; ".join(words) or "no settings"


def warnings(policy: Policy) -> list[str]:
    """Problems that load fine but are probably mistakes."""
    out: list[str] = []
    blanket = [r for r in policy.rules if r.effect == "forbid" and not r.when]
    for index, rule in enumerate(policy.rules):
        if rule.effect != "permit":
            continue
        for forbid in blanket:
            if function_pattern(forbid.function).fullmatch(rule.function):
                out.append(f"rules[{index}] ({rule.id}): unreachable, forbid rule "
                           f"'{forbid.id}' denies every call it could permit")
                break
    for name in policy.budgets.functions:
        if not any(r.effect == "permit" and function_pattern(r.function).fullmatch(name)
                   for r in policy.rules):
            out.append(f"budgets.functions.{name}: no rule permits {name}")
    if not any(r.effect == "permit" for r in policy.rules):
        out.append("rules: no permit rule; every host call will be denied")
    if policy.mode == "audit":
        out.append("mode: audit records decisions but does not block; not for production")
    if policy.code.mode == "restricted" and not policy.isolation.require:
        out.append("code: restricted code is defence in depth; also require isolation "
                   "properties (isolation.require)")
    return out
