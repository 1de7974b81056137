"""The package is layered: no import cycles between its modules, and the library never imports the CLI.

Every module under tamc_codec/ is parsed with `ast` (nothing is imported), and every import of
another tamc_codec module is collected, module-level and function-level alike (a lazy import
inside a function still ties the two modules together), plus `importlib.import_module` of a
constant name.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tamc_codec"
ROOT = PACKAGE.name


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(module: str, path: Path) -> set[str]:
    """The dotted names `module` imports: `from X import y` gives X.y (which is a module or not)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.update(f"{source}.{a.name}" for a in node.names)
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            names.add(node.args[0].value)
    return names


@lru_cache(maxsize=1)
def _graph() -> dict[str, frozenset[str]]:
    """module -> the tamc_codec modules it imports (the nearest module named by each import)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            while name not in modules and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in modules and name != module:
                targets.add(name)
        graph[module] = frozenset(targets)
    return graph


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _subpackage_graph() -> dict[str, frozenset[str]]:
    """The module graph folded onto tamc_codec's direct children (subpackages and top-level modules)."""
    def child(module: str) -> str:
        return ".".join(module.split(".")[:2])

    folded: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        folded.setdefault(child(module), set()).update(child(t) for t in targets if child(t) != child(module))
    return {k: frozenset(v) for k, v in folded.items()}


def _is_cli(module: str) -> bool:
    return module == f"{ROOT}.cli" or module.startswith(f"{ROOT}.cli.")


def test_the_parser_sees_module_and_function_level_imports():
    graph = _graph()
    assert f"{ROOT}.cli" in graph and f"{ROOT}.grouping.affinity" in graph and f"{ROOT}.dag.dag" in graph
    # module level, relative
    assert f"{ROOT}.errors" in graph[f"{ROOT}.dag.dag"]
    # function level, relative: dag.py imports its estimators only when building
    assert {f"{ROOT}.dag.kde", f"{ROOT}.dag.cond_coding"} <= graph[f"{ROOT}.dag.dag"]
    # `from . import curves` is the module bench.curves, not the package
    assert f"{ROOT}.bench.curves" in graph[f"{ROOT}.bench.report"]
    # function level, in a CLI command module
    assert f"{ROOT}.grouping.grouping_io" in graph[f"{ROOT}.cli.group_cmd"]


def test_cycle_finder_finds_cycles():
    g = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert _cycles(g) == [["a", "b", "c"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_library_never_imports_the_cli():
    allowed = {f"{ROOT}.__main__"}  # `python -m tamc_codec` is the command line
    offenders = sorted(f"{m} imports {t}" for m, targets in _graph().items() if not _is_cli(m) and m not in allowed
                       for t in targets if _is_cli(t))
    assert not offenders, offenders


def test_no_module_is_left_in_the_old_lookahead_package():
    assert not any(m.startswith(f"{ROOT}.lookahead") for m in _modules())
    assert not (PACKAGE / "lookahead").exists()


def test_grouping_and_dag_do_not_import_each_other_in_a_cycle():
    sub = _subpackage_graph()
    grouping, dag = f"{ROOT}.grouping", f"{ROOT}.dag"
    assert not (dag in sub.get(grouping, ()) and grouping in sub.get(dag, ()))


def test_bench_ablation_and_report_do_not_import_each_other():
    graph = _graph()
    ablation, report = f"{ROOT}.bench.ablation", f"{ROOT}.bench.report"
    assert not (report in graph[ablation] and ablation in graph[report])


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def test_no_import_cycles_between_subpackages():
    assert _cycles(_subpackage_graph()) == []
