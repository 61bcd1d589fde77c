"""The pieces of ``timm_ext.train``: ``train_one_epoch`` reads the loss on the host only at its sync points (and a
non-finite loss is still caught there), and ``python -m timm_ext.train`` reports bad input in one line, exit code 2."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

import timm_ext.train as trainer
from tests.helpers import ROOT, subprocess_env

_READS = {'item', 'tolist', '__bool__', '__float__', '__int__', '__index__', 'numpy', 'cpu'}


class _HostReads(TorchFunctionMode):
    """Records every tensor read to the host (``item``, ``tolist``, ``bool(t)``, ...) made by timm_ext/train.py."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, '__name__', '') in _READS and sys._getframe(1).f_code.co_filename == trainer.__file__:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


def _parts(tmp_path, *flags: str):
    """dla46_c for 4 classes with the trainer's own run, optimizer and scheduler (no data folder is read)."""
    args = trainer.parse_args(['--data-dir', str(tmp_path), '--model', 'dla46_c', '--device', 'cpu', '--no-progress',
                       '--output', str(tmp_path / 'out'), '--warmup-epochs', '0', *flags])
    run = trainer.setup_run(args)
    model = trainer.build_model(args, num_classes=4, run=run)
    optimizer, scheduler, _ = trainer.build_optimizer(args, model, updates_per_epoch=6)
    return trainer.Parts(model, model, optimizer, scheduler, nn.CrossEntropyLoss()), run


def _batches(sizes, nan_at=None):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 4, (n,), generator=g)) for n in sizes]
    if nan_at is not None:
        batches[nan_at][0][0, 0, 0, 0] = float('nan')
    return batches


def test_the_loss_is_read_only_at_sync_points(tmp_path):
    """5 iterations, --log-interval 2: the trainer reads the device three times (iterations 1, 3 and 5: one transfer
    each), not once per step; the epoch's mean loss is still exact (lr 0: the weights stay, so it can be recomputed)."""
    parts, run = _parts(tmp_path, '--log-interval', '2', '--lr', '0', '--min-lr', '0')
    batches = _batches([2, 2, 2, 2, 3])
    state = trainer.TrainState()
    with _HostReads() as mode:
        mean = trainer.train_one_epoch(parts, batches, run, state, epoch=0)
    assert mode.reads == ['tolist'] * 3
    assert state.updates == 5
    with torch.no_grad():
        losses = [parts.criterion(parts.model(x), y).item() for x, y in batches]  # train mode: batch statistics
    assert mean == sum(v * len(y) for v, (_, y) in zip(losses, batches)) / 11  # the same sum, in the same order


@pytest.mark.parametrize('interval,updates', [(4, 4), (1, 1)])
def test_non_finite_loss_is_caught_at_the_next_sync_point(tmp_path, interval, updates):
    """A NaN at iteration 2 of 6: with --log-interval 4 it is found when the host next reads the loss (iteration 5),
    after the optimizer stepped on it (the weights are NaN, but nothing is saved); with 1, before its step."""
    parts, run = _parts(tmp_path, '--log-interval', str(interval))
    state = trainer.TrainState()
    with pytest.raises(FloatingPointError) as e:
        trainer.train_one_epoch(parts, _batches([2] * 6, nan_at=1), run, state, epoch=0)
    where = 'loss is nan at epoch 1, iteration 2/6 (update 2)'
    if interval == 4:
        assert str(e.value) == (f"{where}, found at iteration 5/6 (the host reads the loss every --log-interval 4 "
                                f"iterations and at the epoch's last); stopped, nothing saved: no checkpoint was "
                                f"written")
    else:
        assert str(e.value) == f'{where}; stopped before the optimizer step, nothing saved: no checkpoint was written'
    assert state.updates == updates
    weights_finite = all(torch.isfinite(p).all() for p in parts.model.parameters())
    assert weights_finite == (interval == 1)


def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    """The command line: a dataset folder without train_test_split.txt is one line naming the file, exit code 2."""
    cub = tmp_path / 'CUB_200_2011'
    cub.mkdir()
    (cub / 'images.txt').write_text('1 a/1.jpg\n')
    proc = subprocess.run([sys.executable, '-m', 'timm_ext.train', '--dataset', 'cub', '--data-dir', str(tmp_path)],
                          capture_output=True, text=True, env=subprocess_env(), cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ''
    assert proc.stderr == (f"python -m timm_ext.train: error: dataset 'cub': missing {cub / 'train_test_split.txt'}; "
                           f"expected the official "
                           f"CUB-200-2011 layout: <data_dir>/CUB_200_2011/{{images.txt, train_test_split.txt, "
                           f"image_class_labels.txt, classes.txt, images/}} (--data-dir is the folder holding "
                           f"CUB_200_2011/, or CUB_200_2011/ itself)\n")


@pytest.mark.parametrize('argv,message', [
    ([], 'data_dir: required (an ImageFolder root with train/ and val/), or use --make-synthetic'),
    (['--data-dir', 'nowhere', '--model', 'dla35'],
     "model: unknown 'dla35'; allowed: a name of timm.list_models() ({n} names); closest: dla34, dla60"),
    (['--data-dir', 'nowhere', '--model', 'dla46_m', '--pretrained'],
     "pretrained: timm has no pretrained weights for 'dla46_m'; pass --no-pretrained, or --initial-checkpoint FILE"),
    (['--data-dir', 'nowhere', '--log-interval', '0'], 'log_interval: must be >= 1, got 0'),
    (['--data-dir', 'nowhere', '--resume', 'nope.pth'],
     "resume: no such file 'nope.pth' (a last.pth written by timm_ext.train, or 'auto')"),
])
def test_main_reports_bad_input_in_one_line(tmp_path, monkeypatch, capsys, argv, message):
    """Each bad flag: ``main`` prints ``PROG: error: <message naming the flag>`` on stderr alone and returns 2, before
    any data is read or any model is built."""
    import timm

    monkeypatch.chdir(tmp_path)
    assert trainer.main(argv + ['--device', 'cpu', '--output', str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == '' and err == 'python -m timm_ext.train: error: ' + message.format(n=len(timm.list_models())) + '\n'


def test_unexpected_errors_keep_their_traceback(tmp_path):
    """A non-finite loss is no bad input: ``main`` lets it propagate (on the command line: traceback, exit code 1)."""
    import timm

    data = trainer.make_synthetic_imagefolder(tmp_path / 'shapes', num_train=8, num_val=4, image_size=32)
    poisoned = timm.create_model('dla46_c', num_classes=4).state_dict()
    poisoned['fc.weight'].fill_(float('nan'))
    torch.save(poisoned, tmp_path / 'nan.pth')
    with pytest.raises(FloatingPointError, match=r'^loss is nan at epoch 1, iteration 1/2 \(update 1\); stopped '):
        trainer.main(['--data-dir', str(data), '--initial-checkpoint', str(tmp_path / 'nan.pth'), '--img-size', '32',
                      '-b', '4', '-j', '0', '--device', 'cpu', '--output', str(tmp_path / 'out'), '--no-progress'])
