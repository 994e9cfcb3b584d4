"""Which package may import which: the layout of docs/architecture.md, pinned.

Imports run downward only. ``sandboxes`` (where untrusted code runs) never reaches up into
the engine; ``policies`` and ``audit`` are leaves beside it; the daemon and the CLI sit on
top. The agent bundle is checked twice: by its source, and by importing the shipped bundle
in a bare interpreter and listing every module it loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import rlmbox
from rlmbox.sandboxes.bundle import BUNDLE_FILES, write_bundle

PACKAGE = Path(rlmbox.__file__).parent

# layer -> the rlmbox layers it may import (besides itself)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "audit": frozenset({"errors"}),
    "lm": frozenset({"errors"}),
    "observe": frozenset({"errors"}),
    "sandboxes": frozenset({"errors"}),
    "policies": frozenset({"errors", "sandboxes"}),
    "runtime": frozenset({"errors", "sandboxes", "policies", "audit", "lm", "observe"}),
    "adapters": frozenset({"errors", "sandboxes", "policies", "audit", "lm", "observe",
                           "runtime"}),
    "daemon": frozenset({"errors", "sandboxes", "policies", "audit", "lm", "observe",
                         "runtime"}),
    "cluster": frozenset({"errors", "sandboxes", "policies", "audit", "lm", "observe",
                          "runtime"}),
    "cli": frozenset({"errors", "sandboxes", "policies", "audit", "lm", "observe", "runtime",
                      "daemon", "cluster"}),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_every_module_belongs_to_a_known_layer() -> None:
    layers = {_layer(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert layers <= set(MAY_IMPORT), layers - set(MAY_IMPORT)


def test_imports_run_downward_only() -> None:
    violations = []
    for path in PACKAGE.rglob("*.py"):
        layer = _layer(path)
        if layer == "__init__":
            continue   # the public namespace re-exports from every layer
        for module in _imports(path):
            if not module.startswith("rlmbox."):
                continue
            target = module.split(".")[1]
            if target != layer and target not in MAY_IMPORT[layer]:
                violations.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not violations, "\n".join(violations)


def test_the_agent_source_imports_only_the_stdlib_and_the_bundle() -> None:
    shipped = {source.removesuffix(".py").replace("/", ".") for _, source in BUNDLE_FILES}
    allowed = {f"rlmbox.{name}" for name in shipped} | {
        "rlmbox.sandboxes", "rlmbox.sandboxes.agent", "rlmbox.sandboxes.process"}
    for _, source in BUNDLE_FILES:
        for module in _imports(PACKAGE / source):
            top = module.split(".")[0]
            assert module in allowed or top in sys.stdlib_module_names or \
                top == "__future__", f"{source} imports {module}"


def test_the_shipped_bundle_loads_nothing_outside_the_stdlib(tmp_path: Path) -> None:
    """Imports every bundle module in ``python -I -S`` with only the bundle on the path."""
    write_bundle(tmp_path)
    modules = [inside.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
               for inside, _ in BUNDLE_FILES if inside != "agent.py"]
    probe = (f"import sys, json\nsys.path.insert(0, {str(tmp_path)!r})\n"
             f"for m in {modules!r}: __import__(m)\n"
             "print(json.dumps({n: getattr(m, '__file__', None) "
             "for n, m in sys.modules.items()}))\n")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True,
                          text=True, check=True, cwd=tmp_path)
    loaded: dict[str, str | None] = json.loads(done.stdout)
    outside = {name for name, file in loaded.items()
               if name.split(".")[0] not in sys.stdlib_module_names
               and not (file or "").startswith(str(tmp_path))
               and name not in ("__main__", "_frozen_importlib", "_frozen_importlib_external")}
    assert not outside, outside
    assert all((loaded[m] or "").startswith(str(tmp_path)) for m in modules)


def test_importing_rlmbox_never_imports_ray() -> None:
    """Ray is the ``ray`` extra: only ``rlmbox.cluster`` imports it (and the audit side of
    the cluster, ``rlmbox.audit.collected``, verifies logs without it)."""
    probe = ("import sys, rlmbox, rlmbox.cli.main, rlmbox.audit.collected\n"
             "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_only_the_cluster_package_imports_ray() -> None:
    importers = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                       if any(m == "ray" or m.startswith("ray.") for m in _imports(path)))
    assert importers
    assert all(p.startswith("cluster/") for p in importers), importers


E2B_SDK = ("e2b", "e2b_code_interpreter", "protobuf", "connectrpc")


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (not inside a function: those load lazily)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_e2b_sdk_is_imported_only_by_the_e2b_backend_and_only_lazily() -> None:
    """``import rlmbox`` works without the optional SDK: only sandboxes/e2b/ touches it,
    inside the functions that need it."""
    violations = []
    for path in PACKAGE.rglob("*.py"):
        inside_e2b = path.parent == PACKAGE / "sandboxes" / "e2b"
        found = _top_level_imports(path) if inside_e2b else _imports(path)
        for module in found:
            if module.split(".")[0] in E2B_SDK:
                violations.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not violations, "\n".join(violations)
