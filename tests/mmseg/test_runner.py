"""mmseg adapter with mmengine's Runner: train + validate on synthetic Cityscapes/CamVid layouts, resume, reload,
inference, the ``mmseg_ext.train``/``mmseg_ext.test`` entries and mmseg's own ``tools/train.py``."""
import glob
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmseg_ext
from mmseg_ext import get_config_file
from mmseg_ext.demo import CITYSCAPES_CONFIG, majority_class_miou, tiny_config
from mmseg_ext.synthetic import write_camvid_layout, write_cityscapes_layout
from tests.helpers import subprocess_env  # noqa: E402

CAMVID_CONFIG = get_config_file('dla34_idaup_4xb2-20k_camvid-400x400.py')
ITERS = 300  # batches of 8 64x64 images, ~90 s on 2 loaded cores (measured: mIoU 0.84; 150 iterations gave 0.23)
pytestmark = pytest.mark.slow


def _env():
    env = subprocess_env(OMP_NUM_THREADS='1')
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)  # the project must not need it
    return env


@pytest.fixture(scope='module', autouse=True)
def _one_thread():
    """Many tiny ops per iteration: on 2 shared cores, OpenMP barriers between 2 threads cost more than they gain."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope='module')
def cityscapes_run(tmp_path_factory):
    """One real training run shared by the tests below: dla46_c + DLAUpHead, shipped Cityscapes config, shrunk."""
    tmp = tmp_path_factory.mktemp('mmseg_cityscapes')
    root = write_cityscapes_layout(str(tmp / 'cityscapes'), dict(train=32, val=8), size=(64, 64), max_objects=1)
    cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp / 'work'), image_size=(64, 64), max_iters=ITERS,
                      val_interval=ITERS, arch='dla46_c')
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    metrics = runner.val_loop.run()
    return dict(cfg=cfg, root=root, work=str(tmp / 'work'), runner=runner, losses=losses, metrics=metrics,
                ckpt=os.path.join(str(tmp / 'work'), f'iter_{ITERS}.pth'))


def test_runner_trains_cityscapes_layout_well_above_chance(cityscapes_run):
    runner, metrics = cityscapes_run['runner'], cityscapes_run['metrics']
    assert type(runner.train_dataloader.dataset).__name__ == 'CityscapesDataset'
    assert [t['type'] for t in cityscapes_run['cfg'].train_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
        'PackSegInputs']
    assert type(runner.val_evaluator.metrics[0]).__name__ == 'IoUMetric'
    assert type(runner.model.backbone).__name__ == 'DLA' and type(runner.model.decode_head).__name__ == 'DLAUpHead'
    losses = cityscapes_run['losses']
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:5])
    chance = majority_class_miou(os.path.join(cityscapes_run['root'], 'gtFine', 'val', '**', '*_labelTrainIds.png'))
    assert chance < 0.2  # about 90% of the pixels are background: 0.9 / 5 classes present
    assert metrics['mIoU'] / 100 > 2 * chance, metrics  # predicting background everywhere scores `chance`


def test_mmengine_checkpoint_loads_weights_only(cityscapes_run):
    """Our decision for torch >= 2.6: mmseg_ext allow-lists exactly what mmengine stores; weights_only stays on."""
    ckpt = cityscapes_run['ckpt']
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ckpt) == []  # all covered by mmseg_ext's list
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') is None
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == ITERS and 'message_hub' in state and 'optimizer' in state


class _ResumeProbe(Hook):
    """Records what the Runner starts training from (``before_train`` runs after load/resume)."""

    def before_train(self, runner) -> None:
        self.iter = runner.iter
        self.state = {k: v.clone() for k, v in runner.model.state_dict().items()}
        self.momentum = runner.optim_wrapper.optimizer.state_dict()['state']


def test_resume_continues_from_saved_iteration(cityscapes_run, tmp_path):
    cfg = cityscapes_run['cfg'].copy()
    cfg.train_cfg.max_iters = ITERS + 4
    cfg.param_scheduler[0].end = ITERS + 4
    cfg.work_dir, cfg.resume, cfg.load_from = str(tmp_path / 'resumed'), True, cityscapes_run['ckpt']
    runner = Runner.from_cfg(cfg)
    probe = _ResumeProbe()
    runner.register_hook(probe)
    runner.train()
    assert probe.iter == ITERS
    trained = cityscapes_run['runner'].model.state_dict()
    for k, v in probe.state.items():
        torch.testing.assert_close(v, trained[k], rtol=0, atol=0, msg=k)
    assert probe.momentum  # SGD momentum buffers came back too
    assert runner.iter == ITERS + 4
    assert os.path.isfile(tmp_path / 'resumed' / f'iter_{ITERS + 4}.pth')


def test_init_model_and_inference_model(cityscapes_run):
    from mmseg.apis import inference_model, init_model

    cfg_path = os.path.join(cityscapes_run['work'], 'tiny_cityscapes.py')
    cityscapes_run['cfg'].dump(cfg_path)
    model = init_model(cfg_path, cityscapes_run['ckpt'], device='cpu')
    assert model.dataset_meta['classes'][0] == 'road'
    imgs = sorted(glob.glob(os.path.join(cityscapes_run['root'], 'leftImg8bit', 'val', '*', '*.png')))
    gts = [cv2.imread(p.replace('leftImg8bit', 'gtFine').replace('_gtFine.png', '_gtFine_labelTrainIds.png'),
                      cv2.IMREAD_UNCHANGED) for p in imgs]
    preds = [r.pred_sem_seg.data[0].numpy() for r in inference_model(model, imgs)]
    assert len(preds) == len(gts) == 8 and all(p.shape == g.shape for p, g in zip(preds, gts))
    pred, gt = np.stack(preds), np.stack(gts)
    assert (pred == gt).mean() > 0.9
    assert (pred == gt)[gt > 0].mean() > 0.25  # the shapes themselves, not only the ~90% background
    # the same model and test pipeline as the Runner's validation: the same mIoU (IoUMetric: per class over all
    # images, classes absent from both prediction and labels left out)
    ious = [((pred == c) & (gt == c)).sum() / ((pred == c) | (gt == c)).sum() for c in range(19)
            if ((pred == c) | (gt == c)).any()]
    assert 100 * np.mean(ious) == pytest.approx(cityscapes_run['metrics']['mIoU'], abs=0.01)


def test_test_entry_reports_the_val_miou(cityscapes_run, tmp_path, capsys):
    from mmseg_ext.test import main as test_main

    cfg_path = os.path.join(cityscapes_run['work'], 'tiny_cityscapes_entry.py')
    cityscapes_run['cfg'].dump(cfg_path)
    assert test_main([cfg_path, cityscapes_run['ckpt'], '--work-dir', str(tmp_path)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith('[mmseg_ext.test]')][-1]
    miou = float(line.split('mIoU: ')[1].split(',')[0])
    assert miou == pytest.approx(cityscapes_run['metrics']['mIoU'], abs=0.01)


def test_train_entry_and_mmseg_tools_train_accept_our_config(cityscapes_run, tmp_path):
    """A fresh process: custom_imports loads mmseg_ext, checkpoints reload without TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD."""
    import mmseg

    cfg = cityscapes_run['cfg'].copy()
    cfg.train_cfg.max_iters, cfg.param_scheduler[0].end = 2, 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg_path = str(tmp_path / 'two_iters.py')
    cfg.dump(cfg_path)
    tools_train = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    out = subprocess.run([sys.executable, tools_train, cfg_path, '--work-dir', str(tmp_path / 'tools')],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first = os.stat(tmp_path / 'tools' / 'iter_2.pth').st_mtime_ns
    # resume that run with our entry: 2 more iterations from iter 2 (a fresh run would rewrite iter_2.pth)
    out = subprocess.run([sys.executable, '-m', 'mmseg_ext.train', cfg_path, '--work-dir', str(tmp_path / 'tools'),
                          '--resume', '--cfg-options', 'train_cfg.max_iters=4', 'param_scheduler.0.end=4'],
                         env=_env(), capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.stat(tmp_path / 'tools' / 'iter_2.pth').st_mtime_ns == first
    assert torch.load(tmp_path / 'tools' / 'iter_4.pth', weights_only=True)['meta']['iter'] == 4


def test_camvid_layout_runs_through_camvid_dataset(tmp_path):
    root = write_camvid_layout(str(tmp_path / 'camvid'), dict(train=16, val=4, test=4))
    cfg = tiny_config(CAMVID_CONFIG, root, str(tmp_path / 'work'), image_size=(64, 96), max_iters=30, arch='dla46_c')
    runner = Runner.from_cfg(cfg)
    runner.train()
    dataset = runner.train_dataloader.dataset
    assert isinstance(dataset, mmseg_ext.CamVidDataset) and len(dataset) == 16
    assert dataset.metainfo['classes'] == mmseg_ext.CAMVID_CLASSES and len(dataset.metainfo['classes']) == 11
    label = cv2.imread(dataset.get_data_info(0)['seg_map_path'], cv2.IMREAD_UNCHANGED)
    assert (label == 255).any() and label[label != 255].max() <= 4
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    metrics = runner.test()
    assert len(runner.test_dataloader.dataset) == 4 and 0 <= metrics['mIoU'] <= 100


def test_config_round_trip(tmp_path):
    """A dumped shrunk config is a plain, self-contained mmengine config that reloads identically."""
    cfg = tiny_config(CITYSCAPES_CONFIG, 'data', str(tmp_path))
    path = str(tmp_path / 'c.py')
    cfg.dump(path)
    again = Config.fromfile(path)
    assert again.model.to_dict() == cfg.model.to_dict()


def test_runs_in_one_process_log_into_their_own_folders(tmp_path):
    """mmseg's runtime config names its visualizer 'visualizer' (one per process in mmengine): each tiny_config run
    gets its own, so a later run neither writes into an earlier run's folder nor fails once that folder is gone."""
    root = write_cityscapes_layout(str(tmp_path / 'cityscapes'), dict(train=2, val=1), size=(32, 32), max_objects=1)
    for i in range(2):
        cfg = tiny_config(CITYSCAPES_CONFIG, root, str(tmp_path / f'work{i}'), max_iters=1, arch='dla46_c')
        runner = Runner.from_cfg(cfg)
        assert runner.visualizer.instance_name.startswith(f'dla34_idaup_4xb2-80k_cityscapes-512x1024_{os.getpid()}_')
        save_dir = runner.visualizer._vis_backends['LocalVisBackend']._save_dir  # no public accessor
        assert save_dir == os.path.join(runner.log_dir, 'vis_data') and save_dir.startswith(str(tmp_path / f'work{i}'))
        assert os.path.isfile(os.path.join(save_dir, 'config.py'))
        shutil.rmtree(tmp_path / f'work{i}')
