"""The package's layers, checked on its source: each module imports only from its own layer or the
layers before it, takes no private name from another module, and no imports form a cycle.

config → data → method → runner → analysis → plots → entry points (cli, notebook, bench). Every
import counts, those inside functions included: a lazy import that only hides a cycle is a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cldst"
LAYERS = ("config", "data", "method", "runner", "analysis", "plots", "entry")


def layer_of(module: str) -> int:
    """cldst.<sub>... → its layer; the package itself, cli, notebook, bench and the import shim are
    entry points."""
    parts = module.split(".")
    sub = parts[1] if len(parts) > 1 else ""
    return LAYERS.index(sub) if sub in LAYERS[:-1] else LAYERS.index("entry")


def module_sources(package: Path = PACKAGE) -> dict[str, str]:
    """Every module of the package: dotted name → source."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path.read_text()
    return out


def imports_of(module: str, source: str, is_package: bool) -> list[tuple[str, list[str], int]]:
    """(imported cldst module, the names taken from it, line) for every import in ``source``."""
    found = []
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "cldst"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "cldst":
                found.append((target, [a.name for a in node.names], node.lineno))
    return found


def resolve(target: str, names: list[str], modules: dict[str, str]) -> list[str]:
    """The modules an import reaches: ``from cldst.x import y`` reaches cldst.x.y when that is a module."""
    reached = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return reached if reached and len(reached) == len(names) else [target, *reached]


def violations(modules: dict[str, str], packages: set[str]) -> list[str]:
    """Upward imports and private names taken from another module, one line each."""
    out = []
    for module, source in modules.items():
        for target, names, line in imports_of(module, source, module in packages):
            for reached in resolve(target, names, modules):
                if layer_of(reached) > layer_of(module):
                    out.append(f"{module}:{line} imports {reached}: {LAYERS[layer_of(module)]} may not import "
                               f"from {LAYERS[layer_of(reached)]}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                out.append(f"{module}:{line} takes private {', '.join(private)} from {target}")
    return out


def cycles(modules: dict[str, str], packages: set[str]) -> list[list[str]]:
    """Import cycles among the modules (every import, lazy ones included)."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in modules.items():
        for target, names, _ in imports_of(module, source, module in packages):
            for reached in resolve(target, names, modules):
                # a package's __init__ re-exporting its own modules is not a cycle with them
                if reached in modules and reached != module and not reached.startswith(module + "."):
                    graph[module].add(reached)
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def _packages(package: Path = PACKAGE) -> set[str]:
    return {".".join(p.parent.relative_to(package.parent).parts) for p in package.rglob("__init__.py")}


def test_every_module_belongs_to_a_layer_and_imports_only_from_earlier_layers():
    modules = module_sources()
    assert {m.split(".")[1] for m in modules if m.count(".") >= 1} >= set(LAYERS[:-1])
    assert violations(modules, _packages()) == []


def test_there_is_no_import_cycle():
    assert cycles(module_sources(), _packages()) == []


def test_the_method_never_imports_run_folder_checkpoint_progress_or_sweep_code():
    modules = module_sources()
    for module, source in modules.items():
        if layer_of(module) == LAYERS.index("method"):
            reached = [t for t, _, _ in imports_of(module, source, module in _packages())]
            assert not [t for t in reached if t.startswith("cldst.runner")], module


def test_the_checks_catch_a_planted_upward_import_a_private_name_and_a_cycle():
    modules = module_sources()
    packages = _packages()
    planted = dict(modules)
    planted["cldst.method.masks"] += "\nfrom cldst.runner.run_dir import RunDir\n"
    assert violations(planted, packages) == [
        f"cldst.method.masks:{planted['cldst.method.masks'].count(chr(10))} imports cldst.runner.run_dir: "
        "method may not import from runner"]
    planted = dict(modules)
    planted["cldst.plots.run"] += "\nfrom cldst.analysis.results import _secret\n"
    assert [v for v in violations(planted, packages) if "private" in v] == [
        f"cldst.plots.run:{planted['cldst.plots.run'].count(chr(10))} takes private _secret from "
        "cldst.analysis.results"]
    planted = dict(modules)
    planted["cldst.method.seeds"] += "\ndef f():\n    from cldst.method import learner\n"
    assert any(c[0] == c[-1] and "cldst.method.seeds" in c and "cldst.method.learner" in c
               for c in cycles(planted, packages))


@pytest.mark.parametrize("module,layer", [("cldst.config.settings", "config"), ("cldst.data.mnist", "data"),
                                          ("cldst.method.learner", "method"), ("cldst.runner.sweep", "runner"),
                                          ("cldst.analysis.results", "analysis"), ("cldst.plots.run", "plots"),
                                          ("cldst.cli", "entry"), ("cldst", "entry")])
def test_layer_names(module, layer):
    assert LAYERS[layer_of(module)] == layer


@pytest.mark.slow
def test_a_sweeps_wrapper_process_needs_no_torch():
    """Each local sweep run is a `python -m cldst.runner.jobs` process that only starts papermill:
    importing torch there would cost every run seconds and most of a GiB."""
    import subprocess
    import sys

    code = ("import sys, cldst.runner.jobs, cldst.runner.sweep, cldst.runner.status, cldst.runner.estimate; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
