"""``python -m timm_ext.train --resume``: a run SIGKILLed at any point (mid-epoch, or while a checkpoint is being
written) resumes to bit-identical final weights, optimizer and RNG state; a non-finite loss stops the run without
touching the last good checkpoint; bad ``--resume`` inputs get a clear error."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

from dla_plugins.files import SAVE_PAUSE_ENV, read_checkpoint
from tests.helpers import ROOT, subprocess_env
from timm_ext.train import build_parser, make_synthetic_imagefolder, train

ENV = subprocess_env(OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_synthetic_imagefolder(tmp_path_factory.mktemp('shapes'), num_train=32, num_val=16, image_size=32)


def _argv(data: Path, out: Path, *extra: str) -> list:
    return ['--data-dir', str(data), '--model', 'dla46_c', '--epochs', '3', '--img-size', '32', '-b', '8', '-j', '0',
            '--device', 'cpu', '--threads', '1', '--seed', '3', '--model-ema', '--output', str(out), '--no-progress',
            *extra]


def _start(data: Path, out: Path, *extra: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-m', 'timm_ext.train', *_argv(data, out, *extra)], cwd=ROOT,
                            env=dict(ENV, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled every 10 ms)."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f'finished before the kill point:\n{proc.stdout.read()}'
        assert time.monotonic() < end, 'kill point never reached'
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def _assert_same(a, b, where: str = 'checkpoint') -> None:
    """Recursive, bit-exact equality of nested checkpoint containers."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f'{where}[{k!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


@pytest.mark.slow
def test_killed_runs_resume_bit_identically(shapes, tmp_path):
    ref_out, out = tmp_path / 'ref', tmp_path / 'run'
    reference = _start(shapes, ref_out)  # uninterrupted, alongside the killed runs
    # kill 1: while epoch 2's last.pth is being written (the finished temporary file exists, not yet renamed)
    proc = _start(shapes, out, **{SAVE_PAUSE_ENV: '1'})
    _kill_when(proc, lambda: (out / 'last.pth').is_file() and any(out.glob('.last.pth.*.tmp')))
    assert read_checkpoint(out / 'last.pth')['epoch'] == 1  # the previous checkpoint survived, whole
    # kill 2: as soon as the resumed run reports epoch 2 (it is then saving, or already in epoch 3)
    proc = _start(shapes, out, '--resume', 'auto')
    first = proc.stdout.readline()
    assert first.startswith(f'resumed from {out / "last.pth"} at epoch 1/3 (update 4)'), first
    _kill_when(proc, lambda: proc.stdout.readline().startswith('[dla46_c] epoch 2/3'))
    assert read_checkpoint(out / 'last.pth')['epoch'] in (1, 2)
    # the final resume runs to the end
    final = subprocess.run([sys.executable, '-m', 'timm_ext.train', *_argv(shapes, out, '--resume', 'auto')],
                           cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stdout + final.stderr
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    reference.stdout.close()
    for name in ('last.pth', 'best.pth'):
        ref, got = read_checkpoint(ref_out / name), read_checkpoint(out / name)
        assert got['epoch'] == (3 if name == 'last.pth' else ref['epoch']) and got['updates'] == 4 * got['epoch']
        _assert_same(got, ref, name)  # weights, EMA, optimizer, scheduler, history, RNG states: all bit-identical


def _args(data: Path, out: Path, *extra: str):
    return build_parser().parse_args(_argv(data, out, '--epochs', '1', *extra))


def test_resume_errors(shapes, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"resume: no such file 'nope\.pth' \(a last\.pth written by "
                                                r"timm_ext\.train, or 'auto'\)"):
        train(_args(shapes, tmp_path, '--resume', 'nope.pth'))
    weights = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, weights)
    with pytest.raises(ValueError, match=r"resume: '.*weights\.pth' holds weights but no training state \(missing "
                                         r"\['optimizer', 'scheduler', 'updates', 'best_accuracy', 'history', "
                                         r"'rng_states'\]\); pass it as --initial-checkpoint"):
        train(_args(shapes, tmp_path, '--resume', str(weights)))
    weights.write_text('not a checkpoint')
    with pytest.raises(Exception, match=r"checkpoint: cannot read '.*weights\.pth': not a checkpoint"):
        train(_args(shapes, tmp_path, '--resume', str(weights)))


def test_resume_refuses_another_model_or_ema_setting(shapes, tmp_path):
    train(_args(shapes, tmp_path))  # one epoch, with EMA
    ckpt = read_checkpoint(tmp_path / 'last.pth')
    del ckpt['state_dict_ema']
    torch.save(ckpt, tmp_path / 'no_ema.pth')
    with pytest.raises(ValueError, match=r"resume: '.*no_ema\.pth' was trained without --model-ema; pass the same "
                                         r"flag"):
        train(_args(shapes, tmp_path, '--resume', str(tmp_path / 'no_ema.pth')))
    args = _args(shapes, tmp_path, '--resume', 'auto')
    args.model = 'dla46x_c'
    with pytest.raises(ValueError, match=r"resume: '.*last\.pth' was trained as --model 'dla46_c', not 'dla46x_c'"):
        train(args)
    # a finished run resumed again trains nothing and reports its final state
    before = (tmp_path / 'last.pth').read_bytes()
    res = train(_args(shapes, tmp_path, '--resume', 'auto'))
    assert res['epochs'] == 1 and res['history'] == read_checkpoint(tmp_path / 'last.pth')['history']
    assert (tmp_path / 'last.pth').read_bytes() == before
    # the training checkpoint is a source for dla-plugins convert (its model, not the EMA), exactly
    from dla_plugins.convert import convert

    trained = read_checkpoint(tmp_path / 'last.pth')['state_dict']
    for target, prefix in (('core', ''), ('detectron2', 'backbone.bottom_up.dla.'), ('mmseg', 'backbone.body.')):
        state = convert(str(tmp_path / 'last.pth'), target).state
        assert all(torch.equal(state[prefix + k], v) for k, v in trained.items()
                   if not k.startswith('fc.') and not (target == 'detectron2' and k.endswith('num_batches_tracked')))


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(shapes, tmp_path):
    torch.save({'epoch': 7}, tmp_path / 'last.pth')  # stands for a good checkpoint of an earlier run
    before = (tmp_path / 'last.pth').read_bytes()
    poisoned = timm.create_model('dla46_c', num_classes=4).state_dict()
    poisoned['fc.weight'] = torch.full_like(poisoned['fc.weight'], float('nan'))
    torch.save(poisoned, tmp_path / 'nan.pth')
    with pytest.raises(FloatingPointError) as e:
        train(_args(shapes, tmp_path, '--initial-checkpoint', str(tmp_path / 'nan.pth')))
    assert str(e.value) == (f'loss is nan at epoch 1, iteration 1/4 (update 1); stopped before the optimizer step, '
                            f'nothing saved: {tmp_path / "last.pth"} is kept')
    assert (tmp_path / 'last.pth').read_bytes() == before and not (tmp_path / 'best.pth').exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.pth', 'nan.pth']



def test_non_finite_weights_are_not_saved(shapes, tmp_path):
    """A NaN BatchNorm statistic leaves the training loss finite (batch statistics) but must not be checkpointed."""
    poisoned = timm.create_model('dla46_c', num_classes=4).state_dict()
    poisoned['level5.root.bn.running_mean'][0] = float('nan')
    torch.save(poisoned, tmp_path / 'nan.pth')
    with pytest.raises(FloatingPointError) as e:
        train(_args(shapes, tmp_path / 'out', '--initial-checkpoint', str(tmp_path / 'nan.pth')))
    assert str(e.value) == (f"epoch 1: non-finite weights (2 tensors, first 'level5.root.bn.running_mean'); stopped "
                            f"without saving, the previous checkpoint in {tmp_path / 'out'} is kept")
    assert list((tmp_path / 'out').iterdir()) == []


@pytest.mark.slow
@pytest.mark.ddp
def test_resume_under_torchrun(shapes, tmp_path):
    """Two gloo processes: rank 0 alone writes; each rank's RNG state is kept and restored; the resumed run ends
    bit-identical to the uninterrupted one."""
    def torchrun(out: Path, *extra: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node',
                                 '2', '-m', 'timm_ext.train', *_argv(shapes, out, '--epochs', '2', *extra)], cwd=ROOT,
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

    ref_out, out = tmp_path / 'ref', tmp_path / 'run'
    reference = torchrun(ref_out)
    # the whole job (launcher and both ranks) killed as soon as epoch 1's checkpoint exists
    proc = torchrun(out, start_new_session=True)
    end = time.monotonic() + 300
    while not (out / 'last.pth').is_file():
        assert proc.poll() is None and time.monotonic() < end, 'no kill point'
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    first = read_checkpoint(out / 'last.pth')
    assert first['epoch'] == 1 and len(first['rng_states']) == 2
    assert not torch.equal(first['rng_states'][0]['torch'], first['rng_states'][1]['torch'])  # seed + rank
    resumed = torchrun(out, '--resume', 'auto')
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()[-3000:]
    assert resumed.stdout.read().count('resumed from') == 1  # rank 0 reports; both ranks loaded it
    resumed.stdout.close()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()[-3000:]
    reference.stdout.close()
    _assert_same(read_checkpoint(out / 'last.pth'), read_checkpoint(ref_out / 'last.pth'), 'last.pth')
