"""Training with timm's machinery: ``python -m timm_ext.train`` learns the synthetic shapes ImageFolder, its
checkpoints reload strictly, it runs under torchrun (DDP, gloo), and ``timm_ext.run`` launches a script."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from timm.data import create_dataset, create_transform, resolve_model_data_config

import timm_ext
from dla_plugins.data.synthetic import SHAPE_CLASSES
from tests.helpers import ROOT, subprocess_env  # noqa: E402
from timm_ext.train import make_synthetic_imagefolder

# One torch thread per process: on 2 shared cores this is several times faster than oversubscribed threads.
ENV = subprocess_env(OMP_NUM_THREADS='1')


def _run(args, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_synthetic_imagefolder(tmp_path_factory.mktemp('shapes'), num_train=320, num_val=128, image_size=64)


def _accuracy(model, root: Path) -> float:
    """Accuracy on the val split with timm's eval transform resolved from the model's cfg."""
    cfg = resolve_model_data_config(model)
    transform = create_transform(**dict(cfg, input_size=(3, 64, 64)))
    ds = create_dataset('', root=str(root), split='val', transform=transform)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])
    with torch.no_grad():
        return (model.eval()(x).argmax(1) == y).float().mean().item()


def test_make_synthetic_cli(tmp_path):
    out = _run([sys.executable, '-m', 'timm_ext.train', '--make-synthetic', str(tmp_path), '--synthetic-train', '12',
                '--synthetic-val', '8', '--img-size', '32'], timeout=120)
    assert 'wrote the synthetic shapes ImageFolder' in out.stdout
    assert sorted(p.name for p in (tmp_path / 'train').iterdir()) == sorted(SHAPE_CLASSES)
    assert len(list((tmp_path / 'train').rglob('*.png'))) == 12 and len(list((tmp_path / 'val').rglob('*.png'))) == 8


@pytest.mark.slow
def test_train_entry_learns_and_checkpoints_reload(shapes, tmp_path):
    out_dir = tmp_path / 'out'
    proc = _run([sys.executable, '-m', 'timm_ext.train', '--data-dir', str(shapes), '--model', 'dla46_c',
                 '--epochs', '4', '--img-size', '64', '--workers', '0', '--device', 'cpu', '--channels-last',
                 '--model-ema', '--output', str(out_dir), '--no-progress'])
    lines = proc.stdout.strip().splitlines()
    assert sum(line.startswith('[dla46_c] epoch ') for line in lines) == 4
    summary = lines[-1]
    assert summary.startswith('[timm] dla46_c: final val accuracy')
    accuracy = float(re.search(r'final val accuracy ([\d.]+)', summary).group(1))
    assert accuracy > 0.6, proc.stdout  # 4 classes: chance is 0.25

    ckpt_path = out_dir / 'last.pth'
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert ckpt['arch'] == 'dla46_c' and ckpt['epoch'] == 4 and set(ckpt) >= {'state_dict', 'state_dict_ema'}
    assert (out_dir / 'best.pth').is_file()

    # reload 1: timm's pretrained path (strict), the overlay naming the checkpoint's head size; timm prefers the
    # checkpoint's EMA weights ('state_dict_ema') when present
    model = timm.create_model('dla46_c', pretrained=True, num_classes=4,
                              pretrained_cfg_overlay=dict(file=str(ckpt_path), num_classes=4))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ckpt['state_dict_ema'].items())

    # reload 2: timm.models.load_checkpoint, raw weights: same accuracy with timm's eval transform
    fresh = timm.create_model('dla46_c', num_classes=4)
    timm.models.load_checkpoint(fresh, str(ckpt_path), use_ema=False, strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in ckpt['state_dict'].items())
    assert abs(_accuracy(fresh, shapes) - ckpt['val_accuracy']) < 1e-6 and abs(ckpt['val_accuracy'] - accuracy) < 1e-3


@pytest.mark.slow
@pytest.mark.ddp
def test_train_entry_under_torchrun(shapes, tmp_path):
    out_dir = tmp_path / 'ddp'
    proc = _run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                 '-m', 'timm_ext.train', '--data-dir', str(shapes), '--model', 'dla46_c', '--epochs', '1',
                 '--img-size', '32', '-b', '32', '--workers', '0', '--device', 'cpu', '--output', str(out_dir),
                 '--no-progress'])
    assert proc.stdout.count('[timm] dla46_c: final val accuracy') == 1  # rank 0 reports
    assert proc.stdout.count('[dla46_c] epoch 1/1') == 1
    ckpt = torch.load(out_dir / 'last.pth', map_location='cpu', weights_only=True)
    assert not any(k.startswith('module.') for k in ckpt['state_dict'])
    timm.create_model('dla46_c', num_classes=4).load_state_dict(ckpt['state_dict'], strict=True)


def test_run_launcher_registers_before_the_script(tmp_path):
    script = tmp_path / 'train.py'
    script.write_text(textwrap.dedent("""
        import sys
        import timm
        model = timm.create_model(sys.argv[2], num_classes=3)
        print(type(model).__module__, timm.models.model_entrypoint(sys.argv[2]).__module__, sys.argv[1:])
    """))
    proc = _run([sys.executable, '-m', 'timm_ext.run', str(script), '--model', 'dla46_m'], timeout=120)
    assert proc.stdout.split() == ['dla_plugins.backbone', 'timm_ext.dla', "['--model',", "'dla46_m']"]
    assert 'dla46_m' in timm_ext.REGISTERED


def test_run_launcher_errors():
    proc = subprocess.run([sys.executable, '-m', 'timm_ext.run', 'no/such/train.py'], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=120)
    assert proc.returncode != 0 and "script: no such file 'no/such/train.py'" in proc.stderr
