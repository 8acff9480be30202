"""The house plan, read from the source with ``ast``: no import circle, a layer imports only from its own layer or
the ones below, imports at module top (a function-level one only for an optional heavy dependency, said in a
``# lazy: <reason>`` comment), no branch on a task's name outside ``tasks/``, one registry class, and a registry
that finds a new entry from one new file."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from modellock.utils.registry import Registry

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "modellock"

# lower number = lower layer; a module imports only from its own layer or below
LAYERS = {
    "utils": 0, "errors": 0, "version": 0,
    "nets": 1, "keys": 1, "editors": 1, "data": 1, "train": 1,
    "tasks": 2,
    "edit": 3, "lock": 3, "model_folder": 3,
    "evaluation": 4, "attacks": 4, "serve": 4, "ownership": 4,
    "workflows": 5, "testing": 5,
    "commands": 6, "cli": 6, "__main__": 6, "": 6,  # "": the package's own __init__
}
TASK_NAMES = {"classification", "segmentation"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """``modellock.a.b`` -> (file, is a package)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


MODULES = _modules()


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)


def _imports(tree: ast.Module):
    """``(node, in a function)`` for every import statement but those under ``if TYPE_CHECKING:``."""
    def walk(nodes, in_function):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, in_function
            elif _type_checking(node):
                continue
            else:
                inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                for field in ("body", "orelse", "handlers", "finalbody"):
                    yield from walk(getattr(node, field, []) or [], inner)

    yield from walk(tree.body, False)


def _targets(module: str, package: bool, node) -> list[str]:
    """The modellock modules an import statement imports (the deepest existing module of each name)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODULES else prefix for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in MODULES:
            out.append(name)
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, (path, package) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = {t for node, _ in _imports(tree) for t in _targets(module, package, node) if t != module}
    return graph


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    assert top in LAYERS, f"{module}: no layer in tests/test_layers.py LAYERS (add its package there)"
    return LAYERS[top]


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            assert circle is None, " -> ".join(circle)


def test_a_layer_imports_only_from_its_layer_or_below():
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in _graph().items() for target in sorted(targets) if _layer(target) > _layer(module)]
    assert not upward, "\n".join(upward)


def _lazy_marked(lines: list[str], node) -> bool:
    """``# lazy: <reason>`` on the statement's lines, or on the comment line above its group of imports."""
    if any("# lazy: " in lines[i] for i in range(node.lineno - 1, node.end_lineno)):
        return True
    i = node.lineno - 2
    while i >= 0 and (lines[i].lstrip().startswith(("import ", "from ")) or lines[i].rstrip().endswith((",", ")"))
                      and not lines[i].lstrip().startswith("#")):
        i -= 1
    text = lines[i].strip() if i >= 0 else ""
    comment = text[text.find("# lazy: "):] if "# lazy: " in text else ""
    return (text.startswith("# lazy: ") or text.startswith("try:  # lazy: ")) and len(comment) > len("# lazy: ") + 3


def test_imports_at_module_top_unless_marked_lazy():
    unmarked = []
    for module, (path, _) in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node, in_function in _imports(ast.parse(text)):
            if in_function and not _lazy_marked(lines, node):
                unmarked.append(f"{path.relative_to(SRC)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not unmarked, "function-level imports without a '# lazy: <reason>' comment:\n" + "\n".join(unmarked)


def _task_name_branches(tree: ast.Module) -> list[int]:
    """Lines comparing something with a task's name (``==``, ``!=``, ``in``, ``not in`` a literal)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                literals = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                if any(isinstance(x, ast.Constant) and x.value in TASK_NAMES for x in literals):
                    found.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant) \
                and node.value.value in TASK_NAMES:
            found.append(node.lineno)
    return sorted(found)


def test_no_branch_on_a_task_name_outside_tasks():
    from modellock.tasks import task_names

    assert set(task_names()) == TASK_NAMES  # the names this test looks for are the registered ones
    branches = [f"{path.relative_to(SRC)}:{line}" for module, (path, _) in MODULES.items()
                if not module.startswith("modellock.tasks")
                for line in _task_name_branches(ast.parse(path.read_text(encoding="utf-8")))]
    assert not branches, "branches on a task's name (ask the task type instead):\n" + "\n".join(branches)


def test_the_branch_finder_finds_a_branch():
    """The check above can fail: it finds the branch forms it looks for."""
    tree = ast.parse("if task == 'segmentation':\n    pass\nx = a if 'classification' != b else c\n"
                     "y = t in ('segmentation', 'other')\nz = t == 'detection'\n")
    assert _task_name_branches(tree) == [1, 3, 4]


def test_one_registry_class_and_every_registry_is_one():
    classes = [f"{path.relative_to(SRC)}: {node.name}" for path, _ in MODULES.values()
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.ClassDef) and node.name.endswith("Registry")]
    assert classes == ["modellock/utils/registry.py: Registry"], classes
    from modellock.attacks import ATTACKS
    from modellock.editors import EDITORS
    from modellock.nets.backbones import BACKBONES
    from modellock.tasks import TASKS
    from modellock.tasks.segmentation.models import SEGMENTERS
    from modellock.workflows.baselines import BASELINES

    for registry in (ATTACKS, EDITORS, BACKBONES, TASKS, SEGMENTERS, BASELINES):
        assert isinstance(registry, Registry)
        assert len(registry) > 0
        with pytest.raises(registry.error, match=rf"^unknown {registry.kind} 'no-such-thing' \(known: "):
            registry.get("no-such-thing")


def _entry_module(entry) -> str:
    """The module that defines a registry entry: an attack's function, a baseline's setup, an editor class, a task."""
    fn = getattr(entry, "fn", None) or getattr(entry, "setup", None)
    if fn is None:
        return entry.__module__ if isinstance(entry, type) else type(entry).__module__
    return getattr(fn, "func", fn).__module__  # functools.partial: the function it wraps


def test_every_file_of_a_registry_folder_is_an_entry():
    """The folder is the list: each module of a registry's folder (helpers aside) registers an entry there."""
    from modellock.attacks import ATTACKS
    from modellock.editors import EDITORS
    from modellock.tasks import TASKS
    from modellock.workflows.baselines import BASELINES

    for registry in (ATTACKS, EDITORS, TASKS, BASELINES):
        found = {_entry_module(e) for _, e in registry.items()}
        wanted = set(registry.plugin_modules())
        assert wanted <= found, f"{registry.kind}: {sorted(wanted - found)} register nothing"


def test_a_new_entry_is_one_new_file(tmp_path, monkeypatch):
    """A registry over a folder finds a module added there, with no other file touched."""
    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from modellock.utils.registry import Registry\n"
        "THINGS = Registry('thing', package=__name__, helpers=('shared',))\n")
    (pkg / "shared.py").write_text("VALUE = 1\n")
    (pkg / "alpha.py").write_text("from . import THINGS\nTHINGS.add('alpha', 'A')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = importlib.import_module("plugpkg")
    assert first.THINGS.names() == ["alpha"]
    (pkg / "beta.py").write_text("from . import THINGS\nTHINGS.add('beta', 'B')\n")
    for name in [n for n in sys.modules if n == "plugpkg" or n.startswith("plugpkg.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    second = importlib.import_module("plugpkg")
    assert second.THINGS.names() == ["alpha", "beta"] and second.THINGS.get("beta") == "B"
    with pytest.raises(Exception, match=r"^unknown thing 'gamma' \(known: alpha, beta\)$"):
        second.THINGS.get("gamma")
