"""mmseg's own ``tools/train.py`` (shipped in the installed package, ``mmseg/.mim/tools/``) with a shipped config whose
``init_cfg`` names the ImageNet weights (``dlap://dla34.in1k``, served by a loopback mirror) or a file: one log line
per pretrained load, and a missing file that names both fixes."""
import os
import subprocess
import sys

import mmseg
import pytest
import torch
from mmengine.config import Config

from dla_plugins import create_dla, load_checkpoint
from mmseg_ext.demo import CITYSCAPES_CONFIG, tiny_config
from mmseg_ext.synthetic import write_cityscapes_layout
from tests.golden import load_manifest, synth_state_dict
from tests.helpers import subprocess_env
from tests.weights.mirror import in1k_mirror

TOOLS_TRAIN = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def two_iters(tmp_path_factory):
    """The shipped Cityscapes config shrunk to 2 iterations on 64 px synthetic data, its ImageNet ``init_cfg`` as
    shipped (``dlap://dla34.in1k``), INFO logging as in the shipped runtime."""
    tmp = tmp_path_factory.mktemp('mmseg_tools')
    root = write_cityscapes_layout(str(tmp / 'cityscapes'), dict(train=4, val=2), size=(64, 64), max_objects=1)
    cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp / 'work'), max_iters=2, batch_size=2)
    cfg.model.backbone.init_cfg = Config.fromfile(CITYSCAPES_CONFIG).model.backbone.init_cfg
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint='dlap://dla34.in1k')
    cfg.log_level = 'INFO'
    path = str(tmp / 'two_iters.py')
    cfg.dump(path)
    return path


def _train(config, cwd, *cfg_options, env=None):
    """mmseg's tools/train.py in a fresh process whose sockets reach loopback only (tests/weights/hostrun.py)."""
    args = [sys.executable, '-m', 'tests.weights.hostrun', TOOLS_TRAIN, config, '--work-dir', str(cwd / 'work')]
    args += ['--cfg-options', *cfg_options] if cfg_options else []
    out = subprocess.run(args, env=dict(env or subprocess_env(), OMP_NUM_THREADS='1'), cwd=str(cwd),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    return out.returncode, out.stdout


def test_shipped_config_loads_imagenet_weights_by_name(two_iters, tmp_path):
    """No file placed by hand: the shipped ``dlap://dla34.in1k`` is fetched from the mirror (``DLA_PLUGINS_MIRROR``),
    one line says from where, with which hash status and what loaded; the stem, frozen here, keeps the served
    tensors through training (``frozen_stages=0`` is the only change to the shipped model)."""
    with in1k_mirror(tmp_path, 'dla34') as (env, served):
        rc, out = _train(two_iters, tmp_path, 'model.backbone.frozen_stages=0', env=env)
    assert rc == 0, out[-3000:]
    source = f"mirror {env['DLA_PLUGINS_MIRROR']}/dla34.in1k/pytorch_model.bin"
    n = len(served) - 2  # the classifier stays behind
    lines = [line for line in out.splitlines() if 'DLA init_cfg: ' in line]
    assert len(lines) == 1 and lines[0].endswith(
        f'mmengine - INFO - DLA init_cfg: weights dla34.in1k: from {source} (recorded at first download); loaded {n} '
        'tensors into DLA(dla34); skipped 2 (fc.weight, fc.bias)'), lines
    final = torch.load(tmp_path / 'work' / 'iter_2.pth', map_location='cpu', weights_only=True)['state_dict']
    for key in ('base_layer.0.weight', 'level0.0.weight', 'level1.1.running_var'):
        assert torch.equal(final[f'backbone.body.{key}'], served[key]), key
    assert not torch.equal(final['backbone.body.level5.root.conv.weight'], served['level5.root.conv.weight'])


def test_missing_imagenet_file_names_both_fixes(two_iters, tmp_path):
    rc, out = _train(two_iters, tmp_path, 'model.backbone.init_cfg.checkpoint=checkpoints/dla34_imagenet.pth')
    assert rc == 1
    assert out.rstrip().splitlines()[-1] == (
        "dla_plugins.files.CheckpointError: checkpoint: no such file 'checkpoints/dla34_imagenet.pth' "
        f"(relative to the working directory {str(tmp_path)!r}); model.backbone.init_cfg.checkpoint names the "
        'ImageNet file: point it at yours with --cfg-options model.backbone.init_cfg.checkpoint=PATH, or train from '
        'scratch with --cfg-options model.backbone.init_cfg=None')


def test_pretrained_load_logs_one_line(two_iters, tmp_path):
    """The first fix, with ucbdrive's own ImageNet layout (golden fixture from its dla.py): one line says what was
    loaded, converted and skipped; the run trains its 2 iterations."""
    state = synth_state_dict(load_manifest('ucbdrive_dla34'))
    path = tmp_path / 'dla34-ba72cf86.pth'
    torch.save(state, path)
    rc, out = _train(two_iters, tmp_path, f'model.backbone.init_cfg.checkpoint={path}')
    assert rc == 0, out[-3000:]
    lines = [line for line in out.splitlines() if 'DLA init_cfg: ' in line]
    assert len(lines) == 1, lines
    body = create_dla('dla34', num_classes=0)  # what the DLA backbone holds
    report = load_checkpoint(body, state, classifier='drop')
    assert report.layout == 'ucbdrive' and report.skipped and report.dropped_classifier == ['fc.weight', 'fc.bias']
    assert lines[0].endswith(f"mmengine - INFO - DLA init_cfg: loaded {str(path)!r} into dla34 (layout: ucbdrive): "
                             f'{len(body.state_dict())} tensors loaded, {len(report.converted)} renamed, '
                             f'{len(report.skipped)} skipped, 2 classifier tensors dropped')
    assert os.path.isfile(tmp_path / 'work' / 'iter_2.pth')


def test_training_from_scratch_loads_and_logs_nothing(two_iters, tmp_path):
    rc, out = _train(two_iters, tmp_path, 'model.backbone.init_cfg=None')
    assert rc == 0, out[-3000:]
    assert 'DLA init_cfg: ' not in out and os.path.isfile(tmp_path / 'work' / 'iter_2.pth')
