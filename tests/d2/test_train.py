"""detectron2's DefaultTrainer (our Trainer) on a registered synthetic COCO dataset: losses fall, checkpoints
resume, COCOEvaluator reports AP."""
import os

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import RetinaNet
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import EventStorage

from d2_ext import get_config_file
from d2_ext.data import register_shapes
from d2_ext.demo import shapes_cfg
from d2_ext.train_net import Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    train = register_shapes('dlap_test_shapes_train', str(root / 'train'), 16, size=(96, 96), seed=0)
    test = register_shapes('dlap_test_shapes_val', str(root / 'val'), 4, size=(96, 96), seed=1)
    yield train, test
    for name in (train, test):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _batch_loss(model, batch):
    """Summed losses of ``batch`` in training mode, without changing the model.

    RetinaNet (detectron2's ``DenseDetector._ema_update``) divides its losses by an EMA of the foreground-anchor
    count kept in ``model.loss_normalizer``: it starts at 100 and decays (momentum 0.9) towards the true count
    (~10-50 here), so the logged loss *rises* over the first iterations whatever is learned. For a before/after
    comparison both measurements use the same normalizer: pinned to 100 (= its initial value) and restored after.
    """
    had = hasattr(model, 'loss_normalizer')
    saved = getattr(model, 'loss_normalizer', None)
    if isinstance(model, RetinaNet):
        model.loss_normalizer = 100.0
    try:
        with EventStorage(0), torch.no_grad():
            return sum(model(batch).values()).item()
    finally:
        if had:
            model.loss_normalizer = saved
        elif hasattr(model, 'loss_normalizer'):
            del model.loss_normalizer


def _train(cfg):
    seed_all_rng(0)  # numpy too: the sampler's order and the flips, so the fixed batch is the same every run
    trainer = Trainer(cfg)
    batch = next(iter(Trainer.build_train_loader(cfg)))
    trainer.resume_or_load(resume=False)
    before = _batch_loss(trainer.model, batch)
    results = trainer.train()
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}  # as checkpointed
    after = _batch_loss(trainer.model, batch)
    return trainer, results, saved, [v for v, _ in trainer.storage.history('total_loss').values()], (before, after)


def test_dataset_is_registered_coco(shapes):
    train, _ = shapes
    dicts = DatasetCatalog.get(train)
    assert len(dicts) == 16 and all(d['annotations'] for d in dicts)
    assert MetadataCatalog.get(train).thing_classes == ['square', 'disk', 'triangle', 'plus']
    assert os.path.isfile(MetadataCatalog.get(train).json_file)


@pytest.mark.parametrize('config,iters,lr', [('mask_rcnn_dla34_fpn_1x.yaml', 12, 0.02),
                                             ('retinanet_dla34_up_1x.yaml', 30, 0.03)])
def test_trainer_learns_resumes_and_evaluates(shapes, tmp_path, config, iters, lr):
    train, test = shapes
    cfg = shapes_cfg(get_config_file(config), train, test, str(tmp_path), iters, arch='dla46_c',
                     image_size=96, channels=32, batch_size=4, lr=lr)
    # from scratch (BN, nothing frozen); a short warmup, then the full lr for the rest of this short run
    cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.STEPS = 4, ()
    cfg.SOLVER.CHECKPOINT_PERIOD = iters
    trainer, results, saved, losses, (before, after) = _train(cfg)
    assert len(losses) == iters and all(torch.isfinite(torch.tensor(losses)))
    # the loss on one fixed training batch (logged losses of different batches are too noisy for a few steps)
    assert after < 0.9 * before, (before, after, losses)
    # COCOEvaluator ran on the test set and produced AP numbers
    assert set(results['bbox']) >= {'AP', 'AP50', 'AP75'}
    assert all(0.0 <= v <= 100.0 for v in results['bbox'].values() if v == v)
    if cfg.MODEL.MASK_ON:
        assert 'AP' in results['segm']
    # a checkpoint was written, and resuming continues from it with the same weights
    assert os.path.isfile(tmp_path / 'model_final.pth')
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read().strip() == 'model_final.pth'
    cfg2 = cfg.clone()
    cfg2.SOLVER.MAX_ITER = iters + 2
    cfg2.DATASETS.TEST = ()
    resumed = Trainer(cfg2)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == iters
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, saved[k], msg=k)
    resumed.train()
    assert resumed.iter == iters + 2  # ran iterations iters and iters + 1 only
    assert resumed.storage.history('total_loss').values()[-1][1] == iters + 1
