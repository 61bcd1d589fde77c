"""Core bad input (docs/errors.md): API arguments, non-finite values, checkpoints of the wrong variant or in_chans,
the synthetic data generator; and the doc table itself stays in sync with the code and the tests."""
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dla_plugins as dp
from dla_plugins.data.synthetic import render_shapes
from tests.helpers import ROOT

DOC = ROOT / 'docs' / 'errors.md'


@settings(deadline=None, max_examples=8, derandomize=True)
@given(rate=st.one_of(st.just(math.nan), st.just(math.inf), st.floats(max_value=-1e-9), st.floats(min_value=1.0)))
def test_drop_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError) as e:
        dp.create_dla('dla46_c', drop_rate=rate)
    assert str(e.value) == f'drop_rate: must be in [0, 1), got {rate!r}'


def test_non_finite_input_propagates():
    """Convention: forward does not check values (a check would synchronise the device on every call); a NaN in the
    input shows up as NaN in the output (never replaced), and the training entries stop on the non-finite loss."""
    x = torch.randn(2, 3, 32, 32)
    x[1, 0, 5, 5] = float('nan')
    out = dp.create_dla('dla46_c', num_classes=3).eval()(x)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


def test_checkpoint_of_another_variant_or_in_chans(tmp_path):
    torch.save(dp.create_dla('dla46_c', in_chans=1).state_dict(), tmp_path / 'gray.pth')
    with pytest.raises(dp.CheckpointError) as e:
        dp.create_dla('dla46_c', checkpoint_path=tmp_path / 'gray.pth')
    assert str(e.value) == ('checkpoint does not match DLA (layout: timm):\n  1 mis-shaped key(s):\n'
                            '    base_layer.0.weight: checkpoint (16, 1, 7, 7) vs model (16, 3, 7, 7)')
    torch.save(dp.create_dla('dla46_c').state_dict(), tmp_path / 'd46.pth')
    with pytest.raises(dp.CheckpointError) as e:
        dp.load_checkpoint(dp.create_dla('dla34'), tmp_path / 'd46.pth')
    assert str(e.value).startswith('checkpoint does not match DLA (layout: timm):\n  6 missing key(s):\n')


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_images=-1), 'num_images: must be >= 0, got -1'),
    (dict(num_images=1, size=(8, 64)), 'size: must be (height, width) with both >= 16, got (8, 64)'),
    (dict(num_images=1, size=(32, 32, 3)), 'size: must be (height, width) with both >= 16, got (32, 32, 3)'),
    (dict(num_images=1, max_objects=0), 'max_objects: must be >= 1, got 0'),
    (dict(num_images=1, num_classes=5), 'num_classes: must be in 1..4, got 5'),
])
def test_render_shapes_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as e:
        render_shapes(**kwargs)
    assert str(e.value) == message


def _rows():
    """(message, test reference) of every row of the tables in docs/errors.md."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[3].startswith('`tests/'):
            rows.append((cells[2], cells[3]))
    return rows


def _joined(source: str) -> str:
    """Source text with implicitly concatenated string literals joined (``'a '\\n    f'b'`` -> ``'a b'``)."""
    return re.sub(r"['\"]\s*\n\s*(?:rf|fr|f|r)?['\"]", '', source)


def test_errors_doc_rows_are_backed_by_code_and_tests():
    """Every row names a test that exists, and the fixed text of its message is in that test or in the code."""
    rows = _rows()
    assert len(rows) >= 40
    sources = _joined('\n'.join(p.read_text() for pkg in ('dla_plugins', 'timm_ext', 'd2_ext', 'mmseg_ext')
                                for p in (ROOT / pkg).rglob('*.py')))
    problems = []
    for message, ref in rows:
        for one in re.findall(r'`(tests/[^`]+)`', ref):
            path, _, name = one.partition('::')
            text = (ROOT / path).read_text()
            if not re.search(rf'^(async )?def {re.escape(name)}\(', text, re.M):
                problems.append(f'{one}: no such test')
        if message.startswith('no error'):  # a documented convention, proven by its test
            continue
        literal = re.findall(r'`([^`]+)`', message)
        if not literal:
            problems.append(f'row without a quoted message: {message}')
            continue
        # the longest fixed piece between placeholders such as {path} must appear verbatim in code or tests
        piece = max(re.split(r'\{[^}]*\}|…', literal[0]), key=len).strip(' :;,()')
        tests = _joined('\n'.join((ROOT / r.partition('::')[0]).read_text()
                                   for r in re.findall(r'`(tests/[^`]+)`', ref)))
        tests += re.sub(r'\\+(.)', r'\1', tests)  # messages the tests match as regular expressions
        if piece not in sources and piece not in tests:
            problems.append(f'{piece!r} is printed by nothing')
    assert problems == [], "\n".join(problems)


def test_errors_doc_is_linked():
    assert 'docs/errors.md' in (ROOT / 'README.md').read_text()
    assert 'errors.md' in (ROOT / 'docs' / 'CONTRIBUTING.md').read_text()
    assert Path(DOC).is_file()


def test_core_imports_no_adapter_host_or_harness():
    """No import cycle core -> adapter -> core: importing every core module loads no adapter, host or benchmark."""
    import subprocess
    import sys

    from tests.helpers import subprocess_env

    code = ("import pkgutil, importlib, sys, dla_plugins\n"
            "for m in pkgutil.walk_packages(dla_plugins.__path__, 'dla_plugins.'): importlib.import_module(m.name)\n"
            "bad = ('timm_ext', 'd2_ext', 'mmseg_ext', 'benchmarks', 'timm', 'detectron2', 'mmseg', 'mmengine',\n"
            "       'mmcv')\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in bad))")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=subprocess_env(), check=True)
    assert out.stdout.strip() == '[]'
