"""``python -m d2_ext.train_net``: a run SIGKILLed mid-run and while writing a checkpoint or the ``last_checkpoint``
pointer resumes with ``--resume`` to the final iteration, with the iteration count, scheduler and optimizer state
detectron2 promises; a non-finite loss stops the run (detectron2's ``FloatingPointError``) and leaves the
checkpoints alone; non-finite weights are never saved."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from d2_ext import get_config_file
from d2_ext.train_net import AtomicCheckpointer
from dla_plugins.files import SAVE_PAUSE_ENV, read_checkpoint
from tests.helpers import ROOT, subprocess_env
from tests.timm.test_resume import _kill_when

ENV = subprocess_env(OMP_NUM_THREADS='1')
MAX_ITER = 8


def _cmd(out: Path, *flags: str, opts: tuple = ()) -> list:
    """RetinaNet on 8 synthetic 64 px images, dla46_c + a 32-channel FPN, a checkpoint every 2 iterations."""
    return [sys.executable, '-m', 'd2_ext.train_net', '--config-file',
            get_config_file('retinanet_dla34_fpn_1x.yaml'), '--synthetic-shapes', '8', '--synthetic-size',
            '64', *flags, 'MODEL.WEIGHTS', '', *opts, 'OUTPUT_DIR', str(out), 'MODEL.DEVICE', 'cpu', 'MODEL.DLAP.ARCH',
            'dla46_c', 'MODEL.DLAP.NORM', 'BN', 'MODEL.DLAP.FREEZE_AT', '0', 'MODEL.FPN.OUT_CHANNELS', '32',
            'MODEL.RETINANET.NUM_CONVS', '1', 'INPUT.MIN_SIZE_TRAIN', '(64,)', 'INPUT.MAX_SIZE_TRAIN', '64',
            'SOLVER.IMS_PER_BATCH', '2', 'SOLVER.MAX_ITER', str(MAX_ITER), 'SOLVER.CHECKPOINT_PERIOD', '2',
            'SOLVER.BASE_LR', '0.01', 'SOLVER.WARMUP_ITERS', '2', 'SOLVER.STEPS', '(6,)', 'DATALOADER.NUM_WORKERS',
            '0', 'TEST.EVAL_PERIOD', '0', 'DATASETS.TEST', '()', 'SEED', '1']


def _start(out: Path, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(_cmd(out, *extra), cwd=ROOT, env=dict(ENV, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run(out: Path, *flags: str, opts: tuple = ()) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(out, *flags, opts=opts), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def _pointer(out: Path) -> str:
    return (out / 'last_checkpoint').read_text()


@pytest.mark.slow
def test_killed_run_resumes_to_the_final_iteration(tmp_path):
    out = tmp_path / 'run'
    # kill 1: while model_0000003.pth is being written (complete temporary file, not renamed yet)
    proc = _start(out, **{SAVE_PAUSE_ENV: '1'})
    _kill_when(proc, lambda: (out / 'model_0000001.pth').is_file() and any(out.glob('.model_0000003.pth.*.tmp')))
    assert _pointer(out) == 'model_0000001.pth' and not (out / 'model_0000003.pth').exists()
    assert read_checkpoint(out / 'model_0000001.pth')['iteration'] == 1
    # kill 2: resumed, killed while the pointer is rewritten after model_0000003.pth
    proc = _start(out, '--resume', **{SAVE_PAUSE_ENV: '1'})
    _kill_when(proc, lambda: (out / 'model_0000003.pth').is_file() and any(out.glob('.last_checkpoint.*.tmp')))
    assert _pointer(out) == 'model_0000001.pth'  # the pointer names a complete file, old or new
    # the last resume reaches the end
    final = _run(out, '--resume')
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert 'Starting training from iteration 2' in final.stderr + final.stdout
    assert _pointer(out) == 'model_final.pth'
    got = read_checkpoint(out / 'model_final.pth')
    # what detectron2 restores on resume: the iteration, the LR scheduler, the optimizer (hyper-parameters and
    # per-parameter momentum), so the run ends where an uninterrupted one ends: iteration 7, lr 0.01 * 0.1 after step 6
    trainer = got['trainer']
    assert got['iteration'] == trainer['iteration'] == trainer['_trainer']['iteration'] == MAX_ITER - 1
    assert trainer['hooks']['LRScheduler'] == {'base_lrs': [0.01, 0.01], 'last_epoch': MAX_ITER}
    optimizer = trainer['_trainer']['optimizer']
    assert [g['lr'] for g in optimizer['param_groups']] == pytest.approx([0.001, 0.001], rel=1e-9)
    params = [v for k, v in got['model'].items() if v.is_floating_point() and 'running_' not in k]
    assert sorted(s['momentum_buffer'].shape for s in optimizer['state'].values()) == sorted(p.shape for p in params)
    assert all(torch.isfinite(v).all() for v in got['model'].values() if v.is_floating_point())

    # a non-finite loss: detectron2 raises before the optimizer step; every checkpoint stays as it was
    poisoned = dict(got['model'])
    poisoned['head.cls_score.weight'] = torch.full_like(poisoned['head.cls_score.weight'], float('nan'))
    torch.save({'model': poisoned}, tmp_path / 'nan.pth')
    before = {p.name: p.read_bytes() for p in out.glob('*.pth')} | {'last_checkpoint': _pointer(out).encode()}
    bad = _run(out, opts=('MODEL.WEIGHTS', str(tmp_path / 'nan.pth')))
    assert bad.returncode != 0 and 'FloatingPointError: Loss became infinite or NaN at iteration=0!' in bad.stderr
    assert before == {p.name: p.read_bytes() for p in out.glob('*.pth')} | {'last_checkpoint': _pointer(out).encode()}


def test_non_finite_weights_are_not_saved(tmp_path):
    model = nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(model, str(tmp_path))
    checkpointer.save('model_0000001', iteration=1)
    with torch.no_grad():
        model.bias[1] = float('inf')
    with pytest.raises(FloatingPointError) as e:
        checkpointer.save('model_0000003', iteration=3)
    assert str(e.value) == (f"checkpoint model_0000003: non-finite weights (1 tensors, first 'bias'); not saved, "
                            f"{tmp_path / 'model_0000001.pth'} is kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last_checkpoint', 'model_0000001.pth']
    assert _pointer(tmp_path) == 'model_0000001.pth'
