"""The package's layering contract, read from the source with `ast` (no imports run).

* The core (steps, credit, advantages, losses, reductions, pure) imports nothing of purejax
  above it: `import purejax.credit` in your own JAX code pulls in no trainer, model or task.
* Only purejax/tasks/ imports purejax.tasks, and nothing in purejax imports experiments/ or
  configs/: the library never depends on its demo or its scripts.
* No import cycles between modules, function-local imports included (a local import is no
  way around a cycle).
"""

from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "purejax")
CORE = {
    "purejax._checks",
    "purejax.steps",
    "purejax.credit",
    "purejax.advantages",
    "purejax.losses",
    "purejax.reductions",
    "purejax.pure",
}


def _modules() -> dict[str, str]:
    """module name -> file, for every .py file of the package."""
    out = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: str | None = None) -> set[str]:
    """Every module `module` imports (top-level or inside a function), resolved to files."""
    path = path or MODULES[module]
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in MODULES else base)
    return out


def _graph() -> dict[str, set[str]]:
    return {m: {i for i in _imports(m) if i in MODULES and i != m} for m in MODULES}


def test_the_core_imports_nothing_above_it():
    assert CORE <= set(MODULES)
    for module in sorted(CORE):
        above = sorted(i for i in _imports(module) if i.split(".")[0] == "purejax" and i not in CORE)
        assert not above, f"{module} imports {above}, above the core"


def test_only_tasks_import_tasks_and_nothing_imports_the_scripts():
    for module in sorted(MODULES):
        imports = _imports(module)
        forbidden = sorted(i for i in imports if i.split(".")[0] in ("experiments", "configs"))
        assert not forbidden, f"{module} imports {forbidden}"
        if not module.startswith("purejax.tasks"):
            tasks = sorted(i for i in imports if i == "purejax.tasks" or i.startswith("purejax.tasks."))
            assert not tasks, f"{module} imports {tasks}: only purejax/tasks/ and experiments/ may"
            text = open(MODULES[module], encoding="utf-8").read()
            assert "builtin:" not in text, f"{module} names a built-in task path"


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_local_and_relative_imports(tmp_path):
    """The contract's reader itself: function-local, `from package import module` and
    relative imports all resolve to the module files they load."""
    source = tmp_path / "probe.py"
    source.write_text(
        "def f():\n    from purejax.tasks import builtin\n    import purejax.trainer\n"
        "from . import credit\nfrom .rewards import compose\nfrom purejax.credit import returns\n"
    )
    got = _imports("purejax.probe", str(source))
    assert {"purejax.tasks.builtin", "purejax.trainer", "purejax.credit", "purejax.rewards.compose"} <= got
