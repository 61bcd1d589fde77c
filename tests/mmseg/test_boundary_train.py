"""Boundary detection end to end on synthetic BSDS-layout data: a short training of the shipped boundary config beats
a Sobel detector scored by the same benchmark; mmseg's own tools/train.py and tools/test.py run the config and report
ODS/OIS/AP; ``python -m mmseg_ext.eval_boundary`` on the saved maps gives the same scores."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from mmseg_ext.boundary.demo import BOUNDARY_CONFIG, sobel_baseline, tiny_boundary_config
from mmseg_ext.boundary.synthetic import write_bsds_layout
from mmseg_ext.eval_boundary import main as eval_main
from tests.helpers import subprocess_env

ITERS = 150  # batches of 8 96x96 images, ~45 s on one idle core (measured: ODS 0.64 vs Sobel 0.50)
pytestmark = pytest.mark.slow


def _env():
    return subprocess_env(OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def boundary_run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: one thread wastes less on 2 shared cores
    tmp = tmp_path_factory.mktemp('boundary')
    root = write_bsds_layout(str(tmp / 'bsds'), dict(train=32, val=2, test=8))
    cfg = tiny_boundary_config(BOUNDARY_CONFIG, root, str(tmp / 'work'), max_iters=ITERS)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    torch.set_num_threads(before)
    return dict(cfg=cfg, root=root, tmp=tmp, runner=runner, metrics=metrics, sobel=sobel_baseline(root),
                losses=runner.message_hub.get_scalar('train/loss').data[0],
                ckpt=str(tmp / 'work' / f'iter_{ITERS}.pth'))


def test_short_training_beats_sobel(boundary_run):
    runner, m, s = boundary_run['runner'], boundary_run['metrics'], boundary_run['sobel']
    assert type(runner.train_dataloader.dataset).__name__ == 'BSDS500Dataset'
    assert type(runner.test_evaluator.metrics[0]).__name__ == 'BoundaryMetric'
    assert runner.model.decode_head.strides[0] == 2 and type(runner.model.decode_head.loss_decode).__name__ == \
        'WeightedBoundaryLoss'
    losses = boundary_run['losses']
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    assert 0.3 < s['ODS'] < 0.7  # the strokes nobody annotates fool the gradient
    assert m['ODS'] > s['ODS'] + 0.05 and m['OIS'] > s['OIS'] + 0.05 and m['AP'] > s['AP'] + 0.05, (m, s)


def _scores(text: str, keys=('ODS', 'OIS', 'AP')) -> dict:
    return {k: float(re.search(rf'\b{k}: ([0-9.]+)', text).group(1)) for k in keys}


def test_mmseg_tools_train_and_test_report_ods_ois_ap(boundary_run, tmp_path):
    """mmseg's shipped tools in fresh processes (custom_imports loads mmseg_ext): train.py trains and validates F@0.5;
    test.py on the trained checkpoint reports the Runner's ODS/OIS/AP and saves the maps; eval_boundary agrees."""
    import mmseg

    tools = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools')
    cfg = boundary_run['cfg'].copy()
    cfg.log_level = 'INFO'
    cfg_path = str(tmp_path / 'boundary.py')
    cfg.dump(cfg_path)
    out = subprocess.run([sys.executable, os.path.join(tools, 'train.py'), cfg_path, '--work-dir',
                          str(tmp_path / 'train'), '--cfg-options', 'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                          'param_scheduler.0.milestones=[1]', 'param_scheduler.0.end=2'],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.path.isfile(tmp_path / 'train' / 'iter_2.pth')
    assert set(_scores(out.stdout + out.stderr, ('F', 'precision', 'recall'))) == {'F', 'precision', 'recall'}
    maps = tmp_path / 'maps'
    out = subprocess.run([sys.executable, os.path.join(tools, 'test.py'), cfg_path, boundary_run['ckpt'],
                          '--work-dir', str(tmp_path / 'test'), '--cfg-options', f'test_evaluator.output_dir={maps}'],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    reported = _scores(out.stdout + out.stderr)
    for k in ('ODS', 'OIS', 'AP'):
        assert reported[k] == pytest.approx(boundary_run['metrics'][k], abs=1e-4)  # printed with 4 decimals
    assert len(os.listdir(maps)) == 8
    json_path = str(tmp_path / 'eval.json')
    assert eval_main([str(maps), os.path.join(boundary_run['root'], 'groundTruth', 'test'), '--json', json_path]) == 0
    import json

    again = json.load(open(json_path))
    assert again['images'] == 8
    for k in ('ODS', 'OIS', 'AP', 'ODS_threshold'):
        assert again[k] == boundary_run['metrics'][k]  # the metric scores the same 8-bit maps it saves
