"""``python -m mmseg_ext.train``: a run SIGKILLed while writing a checkpoint, one killed mid-run, and one whose
``last_checkpoint`` pointer was torn, resume with ``--resume`` to the final iteration with the iteration, scheduler
and optimizer state mmengine promises; a non-finite loss stops the run naming the iteration and the value, and
keeps the checkpoints."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.runner import Runner

from dla_plugins.files import SAVE_PAUSE_ENV, read_checkpoint
from mmseg_ext.checkpointing import ATOMIC_BACKEND, latest_checkpoint, protect_config
from mmseg_ext.demo import CITYSCAPES_CONFIG, tiny_config
from mmseg_ext.synthetic import write_cityscapes_layout
from tests.helpers import ROOT, subprocess_env
from tests.timm.test_resume import _kill_when

MAX_ITERS = 8


def _env(**extra: str) -> dict:
    env = subprocess_env(OMP_NUM_THREADS='1', **extra)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # resume must work with weights_only loading
    return env


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    """dla46_c on 8 synthetic 32 px Cityscapes-layout images, batches of 2, a checkpoint every 2 iterations."""
    tmp = tmp_path_factory.mktemp('mmseg_resume')
    root = write_cityscapes_layout(str(tmp / 'cityscapes'), dict(train=8, val=2), size=(32, 32), max_objects=1)
    cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp / 'unused'), image_size=(32, 32), max_iters=MAX_ITERS,
                      batch_size=2, arch='dla46_c')
    cfg.default_hooks.checkpoint.interval = 2
    path = str(tmp / 'tiny.py')
    cfg.dump(path)
    return path


def _poly_after(steps: int) -> tuple:
    """(learning rate, scheduler step) of tiny_config's schedule (SGD lr 0.05, PolyLR power 0.9 to 0) after ``steps``
    iterations, from mmengine's own PolyLR."""
    from mmengine.optim.scheduler import PolyLR

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.05, momentum=0.9)
    scheduler = PolyLR(optimizer, eta_min=0.0, power=0.9, begin=0, end=MAX_ITERS, by_epoch=False)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return optimizer.param_groups[0]['lr'], scheduler.last_step


def _start(cfg: str, work: Path, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'mmseg_ext.train', cfg, '--work-dir', str(work), *extra],
                            cwd=ROOT, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_the_final_iteration(config, tmp_path):
    work = tmp_path / 'work'
    # kill 1: while iter_4.pth is being written (complete temporary file, not renamed yet)
    proc = _start(config, work, **{SAVE_PAUSE_ENV: '1'})
    _kill_when(proc, lambda: (work / 'iter_2.pth').is_file() and any(work.glob('.iter_4.pth.*.tmp')))
    assert not (work / 'iter_4.pth').exists() and read_checkpoint(work / 'iter_2.pth')['meta']['iter'] == 2
    # kill 2: resumed, killed mid-run as soon as iter_4.pth exists
    proc = _start(config, work, '--resume')
    _kill_when(proc, lambda: (work / 'iter_4.pth').is_file())
    assert read_checkpoint(work / 'iter_4.pth')['meta']['iter'] == 4
    # kill 3 (its aftermath): mmengine rewrites last_checkpoint with a plain open('w'); a kill there leaves it empty
    (work / 'last_checkpoint').write_text('')
    assert latest_checkpoint(str(work)) == str(work / 'iter_4.pth')
    first = (work / 'iter_4.pth').stat().st_mtime_ns
    final = subprocess.run([sys.executable, '-m', 'mmseg_ext.train', config, '--work-dir', str(work), '--resume'],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert (work / 'iter_4.pth').stat().st_mtime_ns == first  # resumed after iteration 4 (a fresh run rewrites it)
    assert (work / 'last_checkpoint').read_text() == str(work / f'iter_{MAX_ITERS}.pth')
    ckpt = read_checkpoint(work / f'iter_{MAX_ITERS}.pth')
    # what mmengine restores on resume: iteration, parameter schedulers, optimizer (hyper-parameters and momentum)
    assert ckpt['meta']['iter'] == MAX_ITERS
    lr, last_step = _poly_after(MAX_ITERS)
    assert [s['last_step'] for s in ckpt['param_schedulers']] == [last_step]
    assert [g['lr'] for g in ckpt['optimizer']['param_groups']] == pytest.approx([lr])
    params = [v for k, v in ckpt['state_dict'].items() if v.is_floating_point() and 'running_' not in k]
    assert sorted(s['momentum_buffer'].shape for s in ckpt['optimizer']['state'].values()) == \
        sorted(p.shape for p in params)


def test_non_finite_loss_stops_and_keeps_the_checkpoints(config, tmp_path):
    from mmengine.config import Config

    cfg = protect_config(Config.fromfile(config))
    cfg.work_dir = str(tmp_path)
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend=ATOMIC_BACKEND)
    good = tmp_path / 'iter_2.pth'
    torch.save({'meta': {'iter': 2}}, good)  # stands for a good checkpoint of an earlier run
    (tmp_path / 'last_checkpoint').write_text(str(good))
    state = Runner.from_cfg(cfg.copy()).model.state_dict()
    state['decode_head.conv_seg.weight'] = torch.full_like(state['decode_head.conv_seg.weight'], float('nan'))
    torch.save({'state_dict': state}, tmp_path / 'nan.pth')
    cfg.load_from = str(tmp_path / 'nan.pth')
    with pytest.raises(FloatingPointError) as e:
        Runner.from_cfg(cfg).train()
    assert str(e.value) == f'loss is nan at iteration 1; stopped before saving, {good} is kept'
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_2.pth', 'nan.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(good)


def test_latest_checkpoint_and_resume_errors(tmp_path):
    assert latest_checkpoint(str(tmp_path)) is None
    for name in ('iter_2.pth', 'iter_10.pth', 'best_mIoU_iter_4.pth'):
        (tmp_path / name).write_bytes(b'')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')  # by number, not by name
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')  # the pointer wins when it is whole
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_99.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    from mmseg_ext.train import main

    with pytest.raises(FileNotFoundError, match=r"--resume: no such checkpoint 'nope\.pth'"):
        main([CITYSCAPES_CONFIG, '--resume', 'nope.pth',
              '--work-dir', str(tmp_path)])


def test_atomic_backend_is_what_mmengine_resolves(tmp_path):
    from mmengine.fileio import get_file_backend

    from mmseg_ext.checkpointing import AtomicLocalBackend

    backend = get_file_backend(str(tmp_path), backend_args=dict(backend=ATOMIC_BACKEND))
    assert type(backend) is AtomicLocalBackend
    backend.put(b'weights', tmp_path / 'sub' / 'iter_2.pth')
    backend.put_text('pointer', tmp_path / 'sub' / 'last_checkpoint')
    assert (tmp_path / 'sub' / 'iter_2.pth').read_bytes() == b'weights'
    assert sorted(p.name for p in (tmp_path / 'sub').iterdir()) == ['iter_2.pth', 'last_checkpoint']
