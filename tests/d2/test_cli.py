"""The command-line entry ``python -m d2_ext.train_net``: ``--synthetic-shapes`` in two processes (gloo on the CPU) is
written once, completely, before either process reads it."""
import subprocess
import sys

import pytest

import d2_ext
from tests.helpers import ROOT, subprocess_env

CONFIG = d2_ext.get_config_file('faster_rcnn_dla34_fpn_1x.yaml')
# 64 px inputs, dla46_c and a 32-channel FPN from scratch on the CPU
TINY = ['MODEL.WEIGHTS', '', 'MODEL.DEVICE', 'cpu', 'MODEL.DLAP.ARCH', 'dla46_c', 'MODEL.DLAP.NORM', 'BN',
        'MODEL.FPN.OUT_CHANNELS', '32', 'INPUT.MIN_SIZE_TEST', '64', 'INPUT.MAX_SIZE_TEST', '64',
        'DATALOADER.NUM_WORKERS', '0']


def _run(*args: str, cwd=ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', *args], cwd=str(cwd), env=subprocess_env(OMP_NUM_THREADS='1', **env),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.ddp
def test_train_net_synthetic_shapes_in_two_processes(tmp_path):
    """A fresh ``OUTPUT_DIR``: one process writes the shapes, both read them after a barrier and evaluate half of the
    test images each (before the fix the second process looked for them at once: FileNotFoundError)."""
    out = tmp_path / 'out'
    proc = _run('d2_ext.train_net', '--config-file', CONFIG, '--synthetic-shapes', '8', '--synthetic-size', '64',
                '--num-gpus', '2', '--dist-url', 'auto', '--eval-only', *TINY,
                'MODEL.ROI_HEADS.SCORE_THRESH_TEST', '0.0', 'OUTPUT_DIR', str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert 'World size: 2' in proc.stdout and 'copypaste: Task: bbox' in proc.stdout
    for log in ('log.txt', 'log.txt.rank1'):  # each process evaluated 2 of the 4 test images
        assert 'Start inference on 2 batches' in (out / log).read_text(), log
    shapes = out / 'shapes'
    assert sorted(p.name for p in shapes.rglob('*')) == sorted(
        ['dlap_shapes_train', 'dlap_shapes_val', 'images', 'images', 'instances.json', 'instances.json']
        + [f'{i:05d}.png' for i in range(8)] + [f'{i:05d}.png' for i in range(4)])  # no temporary file left
