"""The core's imports go one way: the layers written in docs/CONTRIBUTING.md ("Layers"), lowest first, read from the
source (function-level imports included). A unit (a top-level module or subpackage of ``dla_plugins``) imports only
units of its own layer or lower ones, and neither units nor modules import each other in a circle."""
import ast
import re
from pathlib import Path
from typing import Dict, List, Set

from tests.helpers import ROOT

CORE = ROOT / 'dla_plugins'
ROW = re.compile(r'^\|\s*(\d+)\s+(\w+)\s*\|([^|]*)\|')


def _layers() -> Dict[str, int]:
    """unit -> layer number, from the "Layers" table of docs/CONTRIBUTING.md (``| 0 files | `files`, ... |``)."""
    text = (ROOT / 'docs' / 'CONTRIBUTING.md').read_text()
    out: Dict[str, int] = {}
    for line in text.split('### Layers', 1)[1].splitlines():
        m = ROW.match(line)
        if m:
            for unit in re.findall(r'`(\w+)`', m.group(3)):
                out[unit] = int(m.group(1))
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob('*.py'))}


def _imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """Every core module ``name`` imports, anywhere in the file (``from . import x`` resolves to module ``x``)."""
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split('.')[0] == 'dla_plugins')
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            if target.split('.')[0] != 'dla_plugins':
                continue
            subs = {f'{target}.{a.name}' for a in node.names if f'{target}.{a.name}' in known}
            out.update(subs or {target})
    return {m for m in out if m in known and m != name}


def _unit(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else 'dla_plugins'


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` (a list of nodes, first == last), or []."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(n: str) -> List[str]:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = 2
        stack.pop()
        return []

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return []


def _graph() -> Dict[str, Set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_core_unit_has_a_layer():
    layers = _layers()
    units = {_unit(m) for m in _modules()} - {'dla_plugins'}
    assert units - set(layers) == set(), 'add these to the Layers table of docs/CONTRIBUTING.md'
    assert set(layers) - units == set(), 'the Layers table names units that do not exist'


def test_imports_go_down_the_layers():
    layers = _layers()
    wrong = []
    for mod, deps in _graph().items():
        unit = _unit(mod)
        if unit == 'dla_plugins':  # the package's __init__ is the top: it gathers the public names
            continue
        for dep in deps:
            if _unit(dep) == 'dla_plugins' or layers[_unit(dep)] > layers[unit]:
                wrong.append(f'{mod} (layer {layers[unit]}) imports {dep} '
                             f'(layer {layers.get(_unit(dep), "top")})')
    assert wrong == []


def test_no_import_cycle_between_modules_or_units():
    graph = _graph()
    assert _cycle(graph) == []
    units: Dict[str, Set[str]] = {}
    for mod, deps in graph.items():
        units.setdefault(_unit(mod), set()).update(_unit(d) for d in deps if _unit(d) != _unit(mod))
    assert _cycle(units) == []


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    """The reader itself: a function-level ``from ..weights import x`` in a checkpoint module is an edge."""
    src = tmp_path / 'load.py'
    src.write_text('def f():\n    from ..weights import fetch\n    from . import detect\n')
    known = {'dla_plugins.weights', 'dla_plugins.checkpoint.detect', 'dla_plugins.checkpoint.load'}
    assert _imports('dla_plugins.checkpoint.load', src, known) == {'dla_plugins.weights',
                                                                    'dla_plugins.checkpoint.detect'}
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


HOST_KNOWLEDGE = re.compile(r'MODEL\.DLAP|MODEL\.BACKBONE|build_dlap_|DLAUpHead|decode_head\.|backbone\.body\.|'
                            r'norm_cfg|init_cfg')


def test_core_names_no_host_config_key():
    """detectron2/mmseg config keys, builder names and key prefixes live in the adapters (``*_ext/layout.py``)."""
    own = {CORE / 'checkpoint' / 'smoke.py'}  # SMOKE's own key prefix, spelled like mmseg's (checked by its rule)
    found = [f'{p.relative_to(ROOT)}:{i}: {line.strip()}' for p in sorted(CORE.rglob('*.py')) if p not in own
             for i, line in enumerate(p.read_text().splitlines(), 1) if HOST_KNOWLEDGE.search(line)]
    assert found == []
