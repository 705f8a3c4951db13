"""The package's layout: packages named by their job, imports only
downwards, no import cycle.

Read from the source (``ast``), every ``import`` counted, those inside
functions too: a lazy import is still an arrow. The order below is the
layout; a new package gets its place in it.
"""
import ast
import os
import os.path as osp
from typing import Dict, List, Set

import pytest

import mmretina

# lowest first: a package may import from the packages before it only
LAYERS = [
    'version',
    'utils',       # small helpers with no detection knowledge
    'structures',  # boxes and IoU
    'registry',    # mmengine registries of scope mmretina
    'engine',      # checkpoints, hooks, optimizers
    'models',      # RetinaHead, FocalLoss, anchors, assigner, converters
    'geo',         # rasters and GIS layers
    'datasets',    # COCO datasets, transforms, label converters
    'deploy',      # every runtime behind one backend interface
    'inference',   # the one tiled-detection loop and the run
    'evaluation',  # field and tiled evaluation
    'analysis',    # analysis tools' library side
    'testing',     # helpers of the test suite
    '(package)',   # mmretina/__init__.py: registers the modules
    'cli',         # the mmretina command (imports the package to register)
    '__main__',
]
TOP = '(package)'


def imports(root: str, package: str,
            toplevel_only: bool = False) -> Dict[str, Set[str]]:
    """Module name -> the names it imports from ``package``'s modules (its
    folder and the folders below it with an ``__init__.py``; absolute,
    relative imports resolved; ``from a import b`` counts ``a`` and
    ``a.b``). ``toplevel_only``: the statements run at import time (the
    module's body), not those inside functions."""
    out = {}
    for dirpath, dirs, files in os.walk(osp.join(root, package)):
        # packages only: not .mim (the configs and tools an install copies
        # into the package) or __pycache__
        dirs[:] = [d for d in dirs
                   if osp.isfile(osp.join(dirpath, d, '__init__.py'))]
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(dirpath, name)
            mod = osp.relpath(path, root)[:-3].replace(os.sep, '.')
            is_pkg = mod.endswith('.__init__')
            if is_pkg:
                mod = mod[:-len('.__init__')]
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            nodes = tree.body if toplevel_only else ast.walk(tree)
            found = set()
            for node in nodes:
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = mod.split('.')[:None if is_pkg else -1]
                        base = base[:len(base) - node.level + 1]
                        src = '.'.join(base + [node.module or ''])
                        src = src.rstrip('.')
                    else:
                        src = node.module or ''
                    found.add(src)
                    found.update(f'{src}.{a.name}' for a in node.names)
            out[mod] = {
                t for t in found
                if t == package or t.startswith(package + '.')}
    return out


def subpackage(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else TOP


def upward_imports(graph: Dict[str, Set[str]],
                   layers: List[str]) -> List[str]:
    """'a.b -> c.d' for every import of a package above the importer's
    layer, and a line for each package without a layer (the package's
    own ``__init__`` is the layer named ``TOP``)."""
    bad = []
    for mod, targets in sorted(graph.items()):
        src = subpackage(mod)
        if src not in layers:
            bad.append(f'{mod}: package {src!r} has no place in LAYERS')
            continue
        for t in sorted(targets):
            dst = subpackage(t)
            if dst == src:
                continue
            if dst not in layers or layers.index(dst) > layers.index(src):
                bad.append(f'{mod} -> {t}')
    return bad


def import_cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Cycles (strongly connected sets of two or more modules) among
    modules, leaving out a package's imports of its own modules and a
    module's of its parent packages (re-exports, as Python runs them)."""
    mods = set(graph)

    def related(a, b):
        return a.startswith(b + '.') or b.startswith(a + '.')

    edges = {
        m: {t for t in ts if t in mods and t != m and not related(m, t)}
        for m, ts in graph.items()
    }
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


ROOT = osp.dirname(osp.dirname(osp.abspath(mmretina.__file__)))


def test_imports_only_go_down():
    bad = upward_imports(imports(ROOT, 'mmretina'), LAYERS)
    assert not bad, 'imports against the layout (tests/test_layout.py ' \
        'LAYERS):\n' + '\n'.join(bad)


def test_no_import_cycle():
    cycles = import_cycles(imports(ROOT, 'mmretina', toplevel_only=True))
    assert not cycles, cycles


def test_every_package_has_a_layer():
    pkgs = {subpackage(m) for m in imports(ROOT, 'mmretina')}
    assert pkgs == set(LAYERS), pkgs ^ set(LAYERS)


@pytest.fixture
def toy(tmp_path):
    """A package with an upward import (low.a -> high.b, inside a
    function) and an import-time cycle (high.b <-> high.c)."""
    files = {
        'toy/__init__.py': '',
        'toy/low/__init__.py': '',
        'toy/low/a.py': 'def f():\n    from ..high import b\n',
        'toy/high/__init__.py': '',
        'toy/high/b.py': 'from . import c\n',
        'toy/high/c.py': 'from toy.high import b\nfrom toy.low import a\n',
    }
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(tmp_path)


def test_checks_find_an_upward_import_and_a_cycle(toy):
    graph = imports(toy, 'toy')
    assert upward_imports(graph, [TOP, 'low', 'high']) == [
        'toy.low.a -> toy.high', 'toy.low.a -> toy.high.b']
    assert upward_imports(graph, [TOP, 'high', 'low']) == [
        'toy.high.c -> toy.low', 'toy.high.c -> toy.low.a']
    assert "toy.high.b: package 'high' has no place in LAYERS" in \
        upward_imports(graph, [TOP, 'low'])
    assert import_cycles(imports(toy, 'toy', toplevel_only=True)) == [
        ['toy.high.b', 'toy.high.c']]
    # the function-level import is an arrow, not an import-time cycle
    assert 'toy.high.b' in graph['toy.low.a']
