"""The project's layers read one way: a walk over every module's imports (its source, so imports
inside functions count too) finds no model module importing train/, data/, eval/ or flags/, no data
module importing train/ or eval/, and no import cycle among the modules."""

import ast

from tests.conftest import REPO_ROOT

PACKAGES = ("models", "data", "train", "eval", "flags")
FORBIDDEN = {"models": {"train", "data", "eval", "flags"}, "data": {"train", "eval"}}


def module_name(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    return {module_name(path): path for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}


def imports(path, modules):
    """The project modules a module imports: `import a.b` and `from a import b` name module a.b
    where it is one, else a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return found


def import_graph():
    modules = project_modules()
    return {name: imports(path, modules) & set(modules) for name, path in modules.items()}


def forbidden(graph):
    """`module imports target` for every import against the layers."""
    return sorted(f"{module} imports {target}" for module, targets in graph.items() for target in targets
                  if target.split(".")[0] in FORBIDDEN.get(module.split(".")[0], ()))


def cycles(graph):
    """The import cycles of `graph` ({module: imported modules}): Tarjan's strongly connected
    components with more than one module (or a module importing itself)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_library_layers_import_only_downwards():
    graph = import_graph()
    assert len(graph) > 70 and "models.registry" in graph["models"]  # every module was read, imports found
    assert forbidden(graph) == []


def test_there_is_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_find_a_forbidden_import_and_a_cycle(tmp_path):
    """The checks can fail: a model module importing train.config (also inside a function), and
    modules importing each other round a loop, are found."""
    path = tmp_path / "a.py"
    path.write_text("import numpy\n\ndef f():\n    from train import config\n    import models.b\n")
    assert imports(path, {"train.config", "models.b"}) == {"train.config", "models.b"}
    assert forbidden({"models.a": {"train.config", "models.b"}, "data.x": {"flags.cli"}}) == [
        "models.a imports train.config"]
    assert cycles({"models.a": {"models.b"}, "models.b": {"models.c"}, "models.c": {"models.a"}, "data.x": set()}) == [
        ["models.a", "models.b", "models.c"]]
