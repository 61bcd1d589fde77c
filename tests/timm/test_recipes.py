"""``python -m timm_ext.train --recipe``: a recipe sets every hyper-parameter of the paper (each flag given still
wins), and a fine-grained recipe run on data in the CUB-200-2011 layout learns, follows the step schedule, records its
effective configuration, and resumes after a SIGKILL to the same bits as an uninterrupted run."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dla_plugins.files import read_checkpoint
from tests.helpers import ROOT, subprocess_env
from tests.timm.test_resume import _assert_same, _kill_when
from timm_ext.recipes import RECIPES, recipe_defaults
from timm_ext.train import build_parser, make_synthetic_imagefolder, parse_args

ENV = subprocess_env(OMP_NUM_THREADS='1')
HYPER_PARAMETERS = {'epochs', 'batch_size', 'opt', 'lr', 'momentum', 'weight_decay', 'wd_bias_norm', 'sched',
                    'decay_epochs', 'decay_rate', 'warmup_epochs', 'smoothing', 'drop', 'model_ema', 'img_size',
                    'crop_pct', 'interpolation', 'scale', 'ratio', 'hflip', 'color_jitter', 'photometric',
                    'lighting', 'mean', 'std', 'pretrained'}


def test_recipes_set_every_hyper_parameter_and_flags_win():
    dests = {a.dest for a in build_parser()._actions}
    for name, recipe in RECIPES.items():
        assert set(recipe) <= dests, f'{name}: not flags: {set(recipe) - dests}'
        assert set(recipe) >= HYPER_PARAMETERS, f'{name}: leaves {HYPER_PARAMETERS - set(recipe)} at the defaults'
    imagenet = vars(parse_args(['--recipe', 'paper-imagenet', '--data-dir', 'x']))
    keys = ('epochs', 'batch_size', 'lr', 'decay_epochs', 'img_size', 'crop_pct', 'photometric', 'lighting',
            'color_jitter', 'pretrained')
    assert {k: imagenet[k] for k in keys} == dict(
        epochs=120, batch_size=256, lr=0.1, decay_epochs=30, img_size=224, crop_pct=0.875, photometric=0.0,
        lighting=0.0, color_jitter=0.0, pretrained=False)  # §5.1: "not color perturbation"
    fine = vars(parse_args(['--recipe', 'paper-finegrained', '--dataset', 'cub', '--data-dir', 'x']))
    assert {k: fine[k] for k in ('epochs', 'batch_size', 'lr', 'decay_epochs', 'decay_rate', 'img_size', 'opt',
                                 'sched', 'momentum', 'weight_decay', 'photometric', 'lighting', 'scale')} == dict(
        epochs=110, batch_size=64, lr=0.01, decay_epochs=50, decay_rate=0.1, img_size=448, opt='momentum',
        sched='step', momentum=0.9, weight_decay=1e-4, photometric=0.4, lighting=0.1, scale=(0.08, 1.0))
    assert parse_args(['--recipe', 'paper-finegrained', '--dataset', 'food101']).img_size == 224  # 224 from 256
    given = parse_args(['--recipe', 'paper-finegrained', '--dataset', 'cub', '--lr', '0.05', '--no-pretrained',
                        '--lighting', '0', '-b', '8'])
    assert (given.lr, given.pretrained, given.lighting, given.batch_size, given.epochs) == (0.05, False, 0.0, 8, 110)
    with pytest.raises(ValueError) as e:
        recipe_defaults('paper-cifar')
    assert str(e.value) == "recipe: unknown 'paper-cifar'; allowed: ['paper-imagenet', 'paper-finegrained']"
    plain = parse_args(['--data-dir', 'x'])  # no recipe: the trainer's own defaults, unchanged
    assert (plain.lr, plain.sched, plain.scale, plain.lighting, plain.color_jitter) == (0.05, 'cosine', (0.5, 1.0), 0.0,
                                                                                          0.4)


def _shapes_as_cub(root: Path) -> Path:
    """The synthetic 4-class shapes written in the CUB-200-2011 layout (list files; train/val folders as the split)."""
    base = root / 'CUB_200_2011'
    make_synthetic_imagefolder(base / 'images', num_train=240, num_val=96, image_size=48)
    files = sorted((base / 'images').rglob('*.png'))
    names = sorted({p.parent.name for p in files})
    (base / 'classes.txt').write_text(''.join(f'{k + 1} {k + 1:03d}.{n}\n' for k, n in enumerate(names)))
    rels = [p.relative_to(base / 'images') for p in files]
    (base / 'images.txt').write_text(''.join(f'{i + 1} {r.as_posix()}\n' for i, r in enumerate(rels)))
    (base / 'train_test_split.txt').write_text(''.join(f'{i + 1} {int(r.parts[0] == "train")}\n'
                                                       for i, r in enumerate(rels)))
    (base / 'image_class_labels.txt').write_text(''.join(f'{i + 1} {names.index(r.parts[1]) + 1}\n'
                                                         for i, r in enumerate(rels)))
    return root


def _argv(data: Path, out: Path, *extra: str) -> list:
    # the recipe, scaled to a 2-core CPU: fewer epochs (the lr decays after 4), tiny images, smaller batches
    return [sys.executable, '-m', 'timm_ext.train', '--recipe', 'paper-finegrained', '--dataset', 'cub',
            '--data-dir', str(data), '--model', 'dla46_c', '--no-pretrained', '--epochs', '5', '--decay-epochs', '4',
            '--img-size', '48', '-b', '16', '--lr', '0.05', '-j', '0', '--device', 'cpu', '--threads', '1',
            '--seed', '5', '--output', str(out), '--no-progress', *extra]


@pytest.mark.slow
def test_recipe_run_learns_and_resumes_bit_identically(tmp_path):
    data = _shapes_as_cub(tmp_path / 'data')
    ref_out, out = tmp_path / 'ref', tmp_path / 'run'
    reference = subprocess.Popen(_argv(data, ref_out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    killed = subprocess.Popen(_argv(data, out), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    _kill_when(killed, lambda: (out / 'last.pth').is_file(), timeout=300)  # right after epoch 1 is saved
    assert read_checkpoint(out / 'last.pth')['epoch'] == 1
    resumed = subprocess.run(_argv(data, out, '--resume', 'auto'), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert reference.wait(timeout=600) == 0, reference.stdout.read()[-3000:]
    log = reference.stdout.read()
    reference.stdout.close()

    # the effective configuration: printed first, saved beside the checkpoint
    lines = log.splitlines()
    assert lines[0] == 'effective configuration (recipe paper-finegrained, dataset cub):', log[:2000]
    printed = dict(line.strip().split(' = ', 1) for line in lines[1:] if line.startswith('  '))
    config = json.loads((ref_out / 'config.json').read_text())
    assert config == json.loads((out / 'config.json').read_text()) | dict(output=str(ref_out), resume=None)
    assert printed['lighting'] == '0.1' and printed['photometric'] == '0.4' and printed['sched'] == 'step'
    steps = [t.split('(')[0] for t in config['train_transform']]  # timm's pipeline with the colour noise spliced in
    assert steps == ['RandomResizedCropAndInterpolation', 'RandomHorizontalFlip', 'MaybeToTensor',
                     'PhotometricDistortion', 'Lighting', 'Normalize'], config['train_transform']
    assert 'scale=(0.08, 1.0)' in config['train_transform'][0] and 'alphastd=0.1' in config['train_transform'][4]
    keys = ('lr', 'batch_size', 'img_size', 'crop_pct', 'mean', 'num_classes', 'train_images', 'eval_images',
            'global_batch_size', 'weight_decay', 'wd_bias_norm', 'pretrained')
    assert {k: config[k] for k in keys} == \
        dict(lr=0.05, batch_size=16, img_size=48, crop_pct=0.875, mean=[0.485, 0.456, 0.406], num_classes=4,
             train_images=240, eval_images=96, global_batch_size=16, weight_decay=1e-4, wd_bias_norm=True,
             pretrained=False)

    # it learns (4 classes: chance 0.25), with the step schedule: lr / 10 after --decay-epochs
    ref = read_checkpoint(ref_out / 'last.pth')
    assert [h['lr'] for h in ref['history']] == pytest.approx([0.05] * 4 + [0.005])
    losses = [h['train_loss'] for h in ref['history']]
    accuracy = float(re.search(r'final val accuracy ([\d.]+)', lines[-1]).group(1))
    assert min(losses[1:]) < 0.8 * losses[0] and accuracy > 0.6, log[-2000:]  # measured: 1.43 -> 0.88, 0.98

    # the killed-and-resumed run ends where the uninterrupted one does, bit for bit
    assert resumed.stdout.splitlines()[0].startswith('effective configuration (recipe paper-finegrained')
    assert f'resumed from {out / "last.pth"} at epoch 1/5' in resumed.stdout
    for name in ('last.pth', 'best.pth'):
        _assert_same(read_checkpoint(out / name), read_checkpoint(ref_out / name), name)
