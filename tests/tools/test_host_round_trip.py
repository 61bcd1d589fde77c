"""A DLA moves between hosts through their own training: core -> host file (``dla-plugins convert --to``) -> the host's
own training loop (detectron2's ``DefaultTrainer`` via ``d2_ext.train_net``, mmengine's Runner) -> ``dla-plugins
convert`` of the checkpoint that loop wrote -> core, timm, detectron2 and mmseg files equal to the trained tensors.

The runs train with lr 0, so the loaded weights stay as loaded (proof that the host loaded our file) while BatchNorm
statistics move (proof that the converted-back tensors are the trained ones, not the start)."""
import subprocess
from pathlib import Path
from typing import Dict

import pytest
import torch
from mmengine.runner import Runner
from safetensors.torch import load_file, save_file

import dla_plugins as dp
from dla_plugins.files import read_checkpoint
from dla_plugins.tools.cli import main
from mmseg_ext.demo import CITYSCAPES_CONFIG, tiny_config
from mmseg_ext.synthetic import write_cityscapes_layout
from tests.d2.test_resume import ENV, _cmd
from tests.helpers import ROOT

pytestmark = pytest.mark.slow
D2_DLA, MM_DLA, MM_NECK = 'backbone.bottom_up.dla.', 'backbone.body.', 'decode_head.dla_up.'


def _core_file(tmp_path: Path) -> Path:
    path = tmp_path / 'core.safetensors'
    save_file({k: v.contiguous() for k, v in dp.create_dla('dla46_c', num_classes=0).state_dict().items()}, str(path))
    return path


def _convert(src: Path, dst: Path, to: str) -> Dict[str, torch.Tensor]:
    assert main(['convert', str(src), str(dst), '--to', to, '--no-progress']) == 0
    if to == 'core':
        return load_file(str(dst))
    return read_checkpoint(dst)['model' if to == 'detectron2' else 'state_dict']


def _under(state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix) and 'num_batches' not in k}


def _assert_equal(got: Dict[str, torch.Tensor], want: Dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    assert [k for k in want if not torch.equal(got[k], want[k])] == []


def test_detectron2_training_output_converts_back_exactly(tmp_path):
    start = _core_file(tmp_path)
    _convert(start, tmp_path / 'd2.pth', 'detectron2')
    out = tmp_path / 'run'
    run = subprocess.run(_cmd(out) + ['MODEL.WEIGHTS', str(tmp_path / 'd2.pth'), 'SOLVER.MAX_ITER', '2',
                                      'SOLVER.BASE_LR', '0.0', 'SOLVER.CHECKPOINT_PERIOD', '100'],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    trained = _under(read_checkpoint(out / 'model_final.pth')['model'], D2_DLA)
    loaded = load_file(str(start))
    assert all(torch.equal(trained[k], loaded[k]) for k in loaded if k.endswith('conv1.weight'))  # lr 0: as loaded
    assert not torch.equal(trained['base_layer.1.running_mean'], loaded['base_layer.1.running_mean'])  # trained
    final = out / 'model_final.pth'
    _assert_equal(_under(_convert(final, tmp_path / 'back.safetensors', 'core'), ''), trained)
    _assert_equal(_under(_convert(final, tmp_path / 'again.pth', 'detectron2'), D2_DLA), trained)
    _assert_equal(_under(_convert(final, tmp_path / 'mm.pth', 'mmseg'), MM_DLA), trained)
    timm = dp.create_dla('dla46_c', num_classes=0)  # timm's layout is ours: the core file loads into timm's model
    dp.load_checkpoint(timm, str(tmp_path / 'back.safetensors'))
    _assert_equal(_under(timm.state_dict(), ''), trained)


def test_mmseg_runner_output_converts_back_exactly(tmp_path):
    _convert(_core_file(tmp_path), tmp_path / 'mm.pth', 'mmseg')
    root = write_cityscapes_layout(str(tmp_path / 'cityscapes'), dict(train=4, val=2), size=(64, 64), max_objects=1)
    cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp_path / 'work'), max_iters=2, batch_size=2, lr=0.0,
                      arch='dla46_c')
    cfg.load_from = str(tmp_path / 'mm.pth')
    Runner.from_cfg(cfg).train()
    ckpt = tmp_path / 'work' / 'iter_2.pth'
    trained = read_checkpoint(ckpt)['state_dict']
    loaded = load_file(str(tmp_path / 'core.safetensors'))
    body = _under(trained, MM_DLA)
    assert all(torch.equal(body[k], loaded[k]) for k in loaded if k.endswith('conv1.weight'))  # lr 0: as loaded
    assert not torch.equal(body['base_layer.1.running_mean'], loaded['base_layer.1.running_mean'])  # trained
    core = _convert(ckpt, tmp_path / 'back.safetensors', 'core')  # the Runner's file: HistoryBuffer, numpy, ...
    _assert_equal(_under(core, 'backbone.'), body)
    _assert_equal(_under(core, 'neck.'), _under(trained, MM_NECK))
    _assert_equal(_under(_convert(ckpt, tmp_path / 'again.pth', 'mmseg'), ''), _under(trained, ''))
    _assert_equal(_under(_convert(ckpt, tmp_path / 'd2.pth', 'detectron2'), D2_DLA), body)
