"""A short, real detectron2 training with a DLA backbone on synthetic shapes: ``python -m d2_ext.demo``.

Registers a COCO-format shapes dataset, trains from scratch with :class:`d2_ext.train_net.Trainer` on the CPU (or
the GPU with ``--device cuda``) and prints one ``[detectron2] ...`` line with the bbox AP of ``COCOEvaluator``.
"""
import argparse
import logging
import os
import tempfile
import time
from typing import Dict, Optional

from detectron2.config import CfgNode, get_cfg

from dla_plugins.data.synthetic import SHAPE_CLASSES

from .config import add_dlap_config
from .data import register_shapes
from .shipped_configs import get_config_file

__all__ = ['shapes_cfg', 'train_shapes_detector', 'main']

# What `python -m d2_ext.demo` (and `make demo`) runs: small enough for ~1-1.5 min of training on 2 CPU cores.
DEMO_CONFIG, DEMO_ARCH, DEMO_ITERS, DEMO_IMAGE_SIZE, DEMO_LR = 'faster_rcnn_dla34_fpn_1x.yaml', 'dla46_c', 100, 96, 0.02


def shapes_cfg(config_file: str, train: str, test: Optional[str], output_dir: str, max_iter: int, *,
               arch: str = 'dla34', image_size: int = 128, channels: int = 64, batch_size: int = 4,
               lr: float = 0.02, device: str = 'cpu') -> CfgNode:
    """``config_file`` (one of ours or any detectron2 yaml using a ``build_dlap_*`` backbone) shrunk for synthetic
    shapes: from scratch (BN, nothing frozen), ``image_size`` px, narrow FPN/neck and heads, 4 classes, anchors
    16-256 px, no periodic evaluation. Not frozen, so callers can still change it."""
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_file(config_file)
    m = cfg.MODEL
    m.WEIGHTS, m.DEVICE = '', device
    m.DLAP.ARCH, m.DLAP.NORM, m.DLAP.FREEZE_AT = arch, 'BN', 0
    m.FPN.OUT_CHANNELS = m.DLAP.NECK.OUT_CHANNELS = channels
    m.ROI_HEADS.NUM_CLASSES = m.RETINANET.NUM_CLASSES = len(SHAPE_CLASSES)
    m.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    m.ROI_BOX_HEAD.FC_DIM = 256
    m.ROI_MASK_HEAD.NUM_CONV = 2
    m.ROI_MASK_HEAD.CONV_DIM = channels
    m.RPN.BATCH_SIZE_PER_IMAGE = 64
    m.RPN.PRE_NMS_TOPK_TRAIN, m.RPN.POST_NMS_TOPK_TRAIN = 300, 100
    m.RPN.PRE_NMS_TOPK_TEST, m.RPN.POST_NMS_TOPK_TEST = 300, 50
    m.RETINANET.NUM_CONVS = 2
    n_levels = len(m.RETINANET.IN_FEATURES if m.META_ARCHITECTURE == 'RetinaNet' else m.RPN.IN_FEATURES)
    per_octave = len(m.ANCHOR_GENERATOR.SIZES[0])
    m.ANCHOR_GENERATOR.SIZES = [[round(s * 2 ** (k / per_octave), 2) for k in range(per_octave)]
                                for s in (16, 32, 64, 128, 256)[:n_levels]]
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (image_size,), image_size
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = image_size, image_size
    cfg.INPUT.MASK_FORMAT = 'bitmask'  # the shapes dataset stores RLE masks
    cfg.DATASETS.TRAIN = (train,)
    cfg.DATASETS.TEST = (test,) if test else ()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER = batch_size, lr, max_iter
    cfg.SOLVER.WARMUP_ITERS = min(50, max_iter // 4)
    cfg.SOLVER.STEPS = (int(max_iter * 0.8),)
    cfg.SOLVER.CHECKPOINT_PERIOD = 10 ** 6
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE, cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 'norm', 5.0
    cfg.TEST.EVAL_PERIOD = 0
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    cfg.OUTPUT_DIR = output_dir
    return cfg


def train_shapes_detector(config: str = DEMO_CONFIG, max_iter: int = DEMO_ITERS, train_images: int = 64,
                          test_images: int = 32, arch: str = DEMO_ARCH, image_size: int = DEMO_IMAGE_SIZE,
                          device: str = 'cpu', seed: int = 0, output_dir: Optional[str] = None,
                          **cfg_kwargs) -> Dict[str, float]:
    """Train ``config`` (a shipped config name, see :func:`get_config_file`, or a path) on ``image_size`` px shapes from
    scratch and evaluate on a held-out set; returns bbox AP/AP50, mean first/last logged losses, seconds, iterations.

    ``cfg_kwargs`` go to :func:`shapes_cfg` (``channels``, ``batch_size``, ``lr``).
    """
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    from .train_net import Trainer

    # Only warnings on the console. Filter at the handlers: DefaultTrainer re-runs setup_logger (INFO, one more
    # handler) when the 'detectron2' logger itself is below INFO.
    for handler in setup_logger(name='detectron2').handlers:
        handler.setLevel(logging.WARNING)
    config_file = config if os.path.isfile(config) else get_config_file(config)
    with tempfile.TemporaryDirectory(prefix='d2_shapes_') as tmp:
        size = (image_size, image_size)
        train = register_shapes('dlap_shapes_train', os.path.join(tmp, 'train'), train_images, size=size, seed=seed)
        test = register_shapes('dlap_shapes_val', os.path.join(tmp, 'val'), test_images, size=size, seed=seed + 1)
        cfg = shapes_cfg(config_file, train, test, output_dir or os.path.join(tmp, 'out'), max_iter, arch=arch,
                         image_size=image_size, device=device, **cfg_kwargs)
        cfg.SEED = seed
        seed_all_rng(seed)  # DefaultTrainer does not seed (default_setup does): same weights, data order, flips
        start = time.time()
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=False)
        results = trainer.train()
        losses = [v for v, _ in trainer.storage.history('total_loss').values()]
    k = max(1, min(10, len(losses) // 4))
    return dict(bbox_ap=float(results['bbox']['AP']), ap50=float(results['bbox']['AP50']),
                first_loss=sum(losses[:k]) / k, final_loss=sum(losses[-k:]) / k, seconds=time.time() - start,
                iterations=max_iter)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=DEMO_CONFIG, help='a shipped config name (d2_ext.list_config_files()) or a path')
    p.add_argument('--arch', default=DEMO_ARCH, help='DLA variant (MODEL.DLAP.ARCH)')
    p.add_argument('--iters', type=int, default=DEMO_ITERS)
    p.add_argument('--image-size', type=int, default=DEMO_IMAGE_SIZE)
    p.add_argument('--lr', type=float, default=DEMO_LR)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--device', default='cpu')
    a = p.parse_args(argv)
    r = train_shapes_detector(a.config, max_iter=a.iters, arch=a.arch, image_size=a.image_size, device=a.device,
                              lr=a.lr, batch_size=a.batch_size)
    print(f"[detectron2] {a.arch} {os.path.basename(a.config)}: {a.iters} iterations on synthetic shapes in "
          f"{r['seconds']:.0f} s, loss {r['first_loss']:.2f} -> {r['final_loss']:.2f}, "
          f"bbox AP {r['bbox_ap']:.1f} (AP50 {r['ap50']:.1f})")


if __name__ == '__main__':
    main()
