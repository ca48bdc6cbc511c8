"""The layering of ARCHITECTURE.md holds in the code: imports run downward only, and there are no cycles.

The layer table is read from ARCHITECTURE.md itself (between the ``layers:begin`` / ``layers:end``
markers), so the document and the test cannot drift apart. Every ``import`` of every module under
``hfssl/`` is parsed, wherever it stands (module level, inside functions, under ``TYPE_CHECKING``):

* no import may point to a higher layer, type-checking imports included (a type from above is a
  dependency on above);
* the modules form no import cycle, function-local and ``TYPE_CHECKING`` imports included, so no
  cycle can hide behind a late import or a type annotation.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hfssl"


def read_layers() -> list[tuple[str, list[str]]]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    match = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, flags=re.DOTALL)
    assert match, "ARCHITECTURE.md must hold the layer table between <!-- layers:begin --> and <!-- layers:end -->"
    layers = []
    for line in match.group(1).splitlines():
        row = re.match(r"^\|\s*\d+\s*\|\s*([\w-]+)\s*\|(.*)\|\s*$", line)
        if row:
            modules = re.findall(r"`(hfssl[\w.]*)`", row.group(2))
            layers.append((row.group(1), modules))
    assert len(layers) >= 5, f"could not read the layer table of ARCHITECTURE.md: {layers}"
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, name: str | None) -> str | None:
    """The hfssl module an import statement loads (``from a.b import c`` loads a.b.c when it is a module)."""
    if not module.startswith("hfssl"):
        return None
    if name is not None and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def imports_of(name: str) -> list[tuple[str, int, bool]]:
    """``(imported hfssl module, line, runtime)`` for every import in module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for item in child.body:
                    visit_statement(item, False)
                for item in child.orelse:
                    visit_statement(item, runtime)
                continue
            visit_statement(child, runtime)

    def visit_statement(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, None)
                if target:
                    found.append((target, node.lineno, runtime))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                target = _resolve(base, alias.name)
                if target:
                    found.append((target, node.lineno, runtime))
        else:
            visit(node, runtime)

    visit(tree, True)
    return found


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int:
    best, best_length = None, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_length:
                best, best_length = index, len(prefix)
    assert best is not None, f"{module} is in no layer of ARCHITECTURE.md: add it to the layer table"
    return best


def test_every_module_has_a_layer():
    layers = read_layers()
    for name in MODULES:
        layer_of(name, layers)


def test_imports_run_downward_only():
    layers = read_layers()
    upward = []
    for name in MODULES:
        mine = layer_of(name, layers)
        for target, line, _ in imports_of(name):
            theirs = layer_of(target, layers)
            if theirs > mine:
                upward.append(f"{MODULES[name].relative_to(ROOT)}:{line} ({layers[mine][0]}) imports {target} "
                              f"({layers[theirs][0]})")
    assert not upward, "imports against the layer order of ARCHITECTURE.md:\n" + "\n".join(upward)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def import_graph(runtime_only: bool = False) -> dict[str, set[str]]:
    return {name: {target for target, _, runtime in imports_of(name) if (runtime or not runtime_only) and target != name}
            for name in MODULES}


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, ("import cycles (function-local and type-checking imports included):\n"
                        + "\n".join(" <-> ".join(c) for c in cycles))


def test_the_checks_catch_what_they_are_for():
    """The cycle finder and the layer reader are not vacuous."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    layers = read_layers()
    assert layer_of("hfssl.models.simclr.modeling_simclr", layers) < layer_of("hfssl.training.trainer", layers)
    assert layer_of("hfssl.training.trainer", layers) < layer_of("hfssl.hub.push", layers)
    graph = import_graph(runtime_only=True)
    assert "hfssl.registry" in graph["hfssl.models.simclr"]  # imports are really parsed
    assert "hfssl.recipe" not in graph["hfssl.export"] and "hfssl.recipe" in import_graph()["hfssl.export"]


@pytest.mark.parametrize("forbidden", ["hfssl.training", "hfssl.hub", "hfssl.evaluation", "hfssl.pipeline"])
def test_model_code_imports_neither_training_nor_hub(forbidden):
    offenders = [f"{name} imports {target}" for name in MODULES if name.startswith("hfssl.models")
                 for target, _, _ in imports_of(name) if target == forbidden or target.startswith(forbidden + ".")]
    assert not offenders, offenders


def method_folder(module: str) -> str | None:
    """``hfssl.models.<method>`` of a module inside a method's folder, else ``None``."""
    parts = module.split(".")
    return ".".join(parts[:3]) if len(parts) >= 3 and parts[:2] == ["hfssl", "models"] else None


def test_only_a_method_imports_its_own_folder():
    """Shared code asks the registry and the model's declared methods; it never imports a method's folder
    (evaluation, the card and the trainer know no particular method)."""
    offenders = [f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}"
                 for name in MODULES for target, line, _ in imports_of(name)
                 if method_folder(target) is not None and method_folder(target) != method_folder(name)]
    assert not offenders, "imports of a method's folder from outside it:\n" + "\n".join(offenders)
    assert method_folder("hfssl.models.mlm.data") == "hfssl.models.mlm" and method_folder("hfssl.models") is None
    assert "hfssl.models.mlm.configuration_mlm" in {target for target, _, _ in imports_of("hfssl.models.mlm.data")}
