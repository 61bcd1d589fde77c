"""What the hosts pickle next to the weights (mmengine's HistoryBuffer log histories, numpy arrays and scalars) is read
by the core as inert :class:`~dla_plugins.files.Opaque` data, in a process where no host registered anything with
torch; nothing outside :data:`~dla_plugins.files.HOST_GLOBALS` is accepted, and no pickled call runs."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from dla_plugins.files import HOST_GLOBALS, CheckpointError, read_checkpoint
from tests.helpers import ROOT, subprocess_env


class _CallsGetattr:
    """Pickles as ``builtins.getattr(HistoryBuffer, '__subclasses__')``: a real getattr would return a method."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__subclasses__')


class _Forbidden:
    """A class of this test module: not on the allow-list."""


def _read_in_fresh_process(path) -> str:
    """``read_checkpoint`` in a process that never imported a host adapter (torch's allow-list is its default)."""
    code = textwrap.dedent(f'''
        import sys
        from dla_plugins.files import read_checkpoint, read_state_dict
        ck = read_checkpoint({str(path)!r})
        hub = ck['message_hub']['log_scalars']['train/loss']
        print(type(hub).__name__, type(ck['meta']['seed']).__name__, type(ck['arr']).__name__,
              type(ck['getattr']).__name__, ck['getattr'].args[1], sorted(read_state_dict({str(path)!r})),
              'mmengine' in sys.modules, 'numpy.core.multiarray' in sys.modules or 'numpy._core' in sys.modules)
    ''')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_runner_style_checkpoint_reads_as_inert_data(tmp_path):
    buf = HistoryBuffer()
    buf.update(1.5)
    ckpt = {'meta': {'seed': np.int64(3), 'iter': 2, 'dataset_meta': {'classes': ('a', 'b')}},
            'state_dict': {'backbone.body.w': torch.ones(2)}, 'message_hub': {'log_scalars': {'train/loss': buf}},
            'arr': np.zeros(3), 'getattr': _CallsGetattr()}
    torch.save(ckpt, tmp_path / 'iter_2.pth')
    got = _read_in_fresh_process(tmp_path / 'iter_2.pth').split(' ', 5)
    assert got[:5] == ['Opaque', 'Opaque', 'Opaque', 'Opaque', '__subclasses__']  # getattr was not called
    assert got[5] == "['backbone.body.w'] False True"  # mmengine was never imported to read it


def test_anything_else_is_refused_naming_it(tmp_path):
    torch.save({'state_dict': {'w': torch.ones(1)}, 'log': HistoryBuffer(), 'x': _Forbidden()}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r"contains pickled Python objects \(tests.core.test_host_objects."
                                              r"_Forbidden\), which could run code"):
        read_checkpoint(tmp_path / 'bad.pth')


def test_the_allow_list_is_exactly_documented():
    """Every allowed name is explained in docs/checkpoints.md (why it is harmless)."""
    text = (ROOT / 'docs' / 'checkpoints.md').read_text()
    assert [n for n in HOST_GLOBALS if f'`{n}`' not in text] == []
