"""The layout rules of the package, checked on the source (AST), not by convention.

- Layer rule: a module imports only from its own layer or below, at the top of
  the file (module-level ``try``/``if`` blocks count as the top).
- No two packages import each other, directly or through others (same layer included).
- mmseg is imported only by the segmentation stage.
- No file in ``s2c/`` is over 500 lines.
"""
from __future__ import annotations

import ast
import os.path as osp
import pathlib

import pytest

REPO = pathlib.Path(osp.dirname(osp.dirname(osp.abspath(__file__))))

#: Lowest first. ``s2c`` itself (the version) sits with the lowest layer.
LAYERS = (
    ('s2c', 's2c.utils', 's2c.structures', 's2c.registry'),
    ('s2c.datasets', 's2c.cam', 's2c.sam'),
    ('s2c.caches',),
    ('s2c.models', 's2c.evaluation', 's2c.visualization'),
    ('s2c.pseudo_labels',),
    ('s2c.engine',),
    ('s2c.apis',),
    ('tools',),
)
LAYER_OF = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}
#: Imports allowed inside a function: ``(file, imported module) -> why``. Only an optional
#: heavy dependency qualifies; keep this empty unless there is one.
LOCAL_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}
MAX_LINES = 500


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for root in ('s2c', 'tools'):
        for path in sorted((REPO / root).rglob('*.py')):
            rel = path.relative_to(REPO).with_suffix('')
            parts = list(rel.parts)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            out.append(('.'.join(parts), path))
    return out


def _package(module: str) -> str:
    """``s2c.sam.backends.sam`` -> ``s2c.sam``; ``tools.x`` -> ``tools``."""
    parts = module.split('.')
    if parts[0] == 'tools':
        return 'tools'
    return '.'.join(parts[:2]) if len(parts) > 1 else 's2c'


def _imports(module: str, path: pathlib.Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at top level)`` of every import of a file."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == '__init__.py'
    top: set[int] = set()

    def mark_top(body: list[ast.stmt]) -> None:
        for node in body:
            top.add(id(node))
            if isinstance(node, ast.Try):
                mark_top(node.body)
                for handler in node.handlers:
                    mark_top(handler.body)
            elif isinstance(node, ast.If):
                mark_top(node.body)
                mark_top(node.orelse)

    mark_top(tree.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.') if is_pkg else module.split('.')[:-1]
                base = base[:len(base) - node.level + 1]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ''
            names = [prefix]
        else:
            continue
        out += [(name, node.lineno, id(node) in top) for name in names]
    return out


MODULES = _modules()


def test_every_module_is_in_a_layer():
    unknown = sorted({_package(m) for m, _ in MODULES} - set(LAYER_OF))
    assert not unknown, f'packages without a layer: {unknown}; add them to LAYERS'


def test_layer_rule_and_top_level_imports():
    problems = []
    for module, path in MODULES:
        rel = str(path.relative_to(REPO))
        here = LAYER_OF[_package(module)]
        for name, line, at_top in _imports(module, path):
            if not at_top and (rel, name) not in LOCAL_IMPORTS_ALLOWED:
                problems.append(f'{rel}:{line} imports {name} inside a function')
            if name == 's2c' or name.startswith('s2c.'):
                there = LAYER_OF[_package(name)]
                if there > here:
                    problems.append(f'{rel}:{line} ({_package(module)}, layer {here}) imports '
                                    f'{name} ({_package(name)}, layer {there})')
    assert not problems, '\n'.join(problems)


def test_no_import_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for module, path in MODULES:
        src = _package(module)
        for name, _, _ in _imports(module, path):
            if name.startswith('s2c.') and _package(name) != src:
                graph.setdefault(src, set()).add(_package(name))

    def reaches(a: str, b: str, seen: set[str]) -> bool:
        for nxt in graph.get(a, ()):
            if nxt == b or (nxt not in seen and reaches(nxt, b, seen | {nxt})):
                return True
        return False

    cycles = sorted(f'{a} <-> {b}' for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert not cycles, f'packages that import each other: {cycles}'


def test_mmseg_only_in_the_segmentation_stage():
    users = sorted(str(path.relative_to(REPO)) for module, path in MODULES
                   for name, _, _ in _imports(module, path)
                   if name.split('.')[0] == 'mmseg' and 'segmentation' not in module)
    assert not users, f'mmseg imported outside the segmentation stage: {users}'


@pytest.mark.parametrize('module,path', [(m, p) for m, p in MODULES if m.startswith('s2c')],
                         ids=[m for m, _ in MODULES if m.startswith('s2c')])
def test_no_file_over_500_lines(module, path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f'{path.relative_to(REPO)} has {lines} lines'


def test_the_rule_catches_a_violation(tmp_path):
    """The checker itself: an upward import and a function-level import are both found."""
    bad = tmp_path / 'bad.py'
    bad.write_text('from s2c.apis import train\n\ndef f():\n    import os\n')
    found = _imports('s2c.utils.bad', bad)
    assert ('s2c.apis', 1, True) in found and ('os', 4, False) in found
    assert LAYER_OF[_package('s2c.apis.train')] > LAYER_OF[_package('s2c.utils.bad')]
    rel = tmp_path / 'pkg' / '__init__.py'
    rel.parent.mkdir()
    rel.write_text('from ..models import CPM\nfrom .x import y\n')
    assert [n for n, _, _ in _imports('s2c.cam', rel)] == ['s2c.models', 's2c.cam.x']
