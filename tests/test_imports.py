"""The import order of caffelite/: no import circles, and no module importing from a higher level.

Every module under caffelite/ is parsed (not imported) and every ``import`` in it counts: at module
level, inside functions and classes, under ``if``/``try``.  The only edges left out are the
implicit ones Python adds for parent packages (importing ``caffelite.solvers.solver`` runs
``caffelite/__init__.py`` first), which say nothing about the code's own layering.

The order, lowest first; a module may import only from its own level or below.  A package
(``layers/``, ``solvers/``, ...) is one name: all its modules share its level.
"""

from __future__ import annotations

import ast
import os
from collections import deque

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join(os.path.dirname(HERE), "caffelite")

# Written once, here (the README's Layout section says the same in words).
ORDER = [
    ["_version", "errors", "textloc", "proto"],
    ["common", "blob", "suggest"],  # suggest: close names, enum values, forks, places for errors
    ["compute", "filler", "protoio", "hdf5"],  # hdf5: I/O only, takes plain data, never a Net
    ["layer"],
    ["transform", "layers"],
    ["layer_factory"],
    ["upgrade"],
    ["net_passes", "net_pycaffe", "net"],  # net_pycaffe: pycaffe's Net surface, the base class of Net
    ["solvers", "testing", "shape_inference", "net_spec"],
    ["checker", "explain", "draw", "onnx", "torch"],  # onnx: export; torch: the PyTorch engine
    ["pycaffe", "compat", "tools", "cli", "__init__", "__main__"],  # caffelite/__init__.py may import anything
]
LEVEL = {name: level for level, names in enumerate(ORDER) for name in names}


# --- the analysis (pure functions over {module name: source}, tested on their own below) ------------
def find_modules(package_dir: str, package: str = "caffelite") -> dict[str, str]:
    """{dotted module name: path} for every .py file under ``package_dir``."""
    modules = {}
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(folder, package_dir)
        parts = [package] + ([] if rel == "." else rel.split(os.sep))
        for name in sorted(files):
            if name.endswith(".py"):
                stem = name[:-3]
                modules[".".join(parts if stem == "__init__" else parts + [stem])] = os.path.join(folder, name)
    return modules


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(module: str, source: str, known: set[str], is_package: bool = False,
               package: str = "caffelite") -> list[tuple[str, int]]:
    """[(imported module, line)]: the modules of ``package`` that ``source`` imports, anywhere in it.

    ``from a.b import c`` is module ``a.b.c`` when that module exists, else ``a.b``.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module) if node.level
                    else node.module or "")
            targets = []
            for alias in node.names:
                sub = "%s.%s" % (base, alias.name)
                targets.append(sub if sub in known else base)
        else:
            continue
        for target in targets:
            if target == package or target.startswith(package + "."):
                # ``import caffelite.a.b`` names module a.b; a name inside a module counts as that module
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    found.append((target, node.lineno))
    return found


def level_name(module: str, package: str = "caffelite") -> str:
    """The name ORDER lists a module under: its first component below the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports(graph: dict[str, list[tuple[str, int]]], level: dict[str, int],
                   paths: dict[str, str]) -> list[str]:
    """One line per import of a module from a higher level than the importer's own."""
    found = []
    for module, edges in sorted(graph.items()):
        mine = level.get(level_name(module))
        for target, line in edges:
            theirs = level.get(level_name(target))
            if mine is not None and theirs is not None and theirs > mine:
                found.append("%s:%d: %s (level %d, %s) imports %s (level %d, %s)" % (
                    _rel(paths[module]), line, module, mine, level_name(module), target, theirs,
                    level_name(target)))
    return found


def import_circles(graph: dict[str, list[tuple[str, int]]], paths: dict[str, str]) -> list[str]:
    """One line per import circle (per strongly connected set of modules): its shortest cycle
    through its first module, each step with the file and line of the import."""
    reach = {m: _reachable(graph, m) for m in graph}
    done: set[str] = set()
    found = []
    for module in sorted(graph):
        if module in done or module not in reach[module]:
            continue
        members = {m for m in reach[module] if module in reach.get(m, set())}
        done |= members
        cycle = _shortest_cycle(graph, module)
        steps = []
        for a, b in zip(cycle, cycle[1:]):
            line = min(ln for t, ln in graph[a] if t == b)
            steps.append("%s (%s:%d)" % (a, _rel(paths[a]), line))
        found.append("circle of %d modules (%s): %s -> %s" % (
            len(members), ", ".join(sorted(members)), " -> ".join(steps), cycle[-1]))
    return found


def _reachable(graph, start: str) -> set[str]:
    seen: set[str] = set()
    todo = [t for t, _ in graph.get(start, ())]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(t for t, _ in graph.get(m, ()))
    return seen


def _shortest_cycle(graph, start: str) -> list[str]:
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        m = queue.popleft()
        for t, _ in sorted(graph.get(m, ())):
            if t == start:
                path = [m]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if t not in parent:
                parent[t] = m
                queue.append(t)
    raise AssertionError("no cycle through %s" % start)


def _rel(path: str) -> str:
    return os.path.relpath(path, os.path.dirname(PACKAGE_DIR))


def build_graph(modules: dict[str, str], sources: dict[str, str]) -> dict[str, list[tuple[str, int]]]:
    known = set(modules)
    return {m: imports_of(m, sources[m], known, is_package=modules[m].endswith("__init__.py"))
            for m in modules}


def _tree():
    modules = find_modules(PACKAGE_DIR)
    sources = {}
    for m, path in modules.items():
        with open(path, encoding="utf-8") as f:
            sources[m] = f.read()
    return modules, build_graph(modules, sources)


# --- the rules on caffelite/ -----------------------------------------------------------------------
def test_every_module_has_a_level():
    modules, _ = _tree()
    missing = sorted({level_name(m) for m in modules} - set(LEVEL))
    assert not missing, "modules or packages not placed in tests/test_imports.py's ORDER: %s" % missing


def test_no_import_circles():
    modules, graph = _tree()
    circles = import_circles(graph, modules)
    assert not circles, "%d import circle(s) in caffelite/:\n%s" % (len(circles), "\n".join(circles))


def test_no_module_imports_from_a_higher_level():
    modules, graph = _tree()
    upward = upward_imports(graph, LEVEL, modules)
    assert not upward, ("%d import(s) from a higher level (order: %s):\n%s"
                        % (len(upward), " < ".join("/".join(names) for names in ORDER), "\n".join(upward)))


# --- the analysis itself finds what it must ---------------------------------------------------------
FAKE = {
    "pkg": "from pkg.high import run\n",
    "pkg.low": "import os\n\ndef late():\n    from pkg.high import run  # function-level: counts\n    return run\n",
    "pkg.mid": "from pkg import low\nfrom pkg.sub import thing\n",
    "pkg.high": "import pkg.mid\n\ntry:\n    import pkg.mid\nexcept ImportError:\n    pass\n",
    "pkg.sub": "from .a import x\n",
    "pkg.sub.a": "from pkg.sub import b\n",
    "pkg.sub.b": "from . import a\nfrom ..low import late\n",
}
FAKE_PATHS = {m: os.path.join(PACKAGE_DIR, *m.split(".")[1:]) + ("/__init__.py" if m in ("pkg", "pkg.sub")
                                                                   else ".py") for m in FAKE}


def _fake_graph():
    known = set(FAKE)
    return {m: imports_of(m, FAKE[m], known, is_package=m in ("pkg", "pkg.sub"), package="pkg") for m in FAKE}


def test_imports_are_found_at_every_depth_and_resolved_to_modules():
    graph = _fake_graph()
    assert graph["pkg.low"] == [("pkg.high", 4)]
    assert graph["pkg.mid"] == [("pkg.low", 1), ("pkg.sub", 2)]
    assert graph["pkg.high"] == [("pkg.mid", 1), ("pkg.mid", 4)]
    assert graph["pkg.sub"] == [("pkg.sub.a", 1)]
    assert sorted(graph["pkg.sub.b"]) == [("pkg.low", 2), ("pkg.sub.a", 1)]


def test_circles_and_upward_imports_are_reported():
    graph = _fake_graph()
    circles = import_circles(graph, FAKE_PATHS)
    assert len(circles) == 1  # low -> high -> mid -> low, and the sub-package inside the same set
    assert "pkg.low (caffelite/low.py:4) -> pkg.high" in circles[0]
    assert "circle of 6 modules" in circles[0]
    level = {"low": 0, "mid": 1, "high": 2, "sub": 1, "__init__": 3}
    upward = upward_imports(graph, level, FAKE_PATHS)
    assert upward == ["caffelite/low.py:4: pkg.low (level 0, low) imports pkg.high (level 2, high)"]
    assert not import_circles({"a": [("b", 1)], "b": []}, {"a": "a.py", "b": "b.py"})
