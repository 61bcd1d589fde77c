"""``python -m mmseg_ext.demo``: a short, real mmseg training of DLA + DLA-Up on synthetic shapes, on the CPU.

It loads the shipped Cityscapes config, swaps in dla46_c (default) and shrinks it (:func:`tiny_config`: tiny crops, few
iterations, no ImageNet weights, no worker processes), writes a synthetic dataset in the Cityscapes layout, trains and
validates with mmengine's Runner, the real ``CityscapesDataset``, the standard pipeline and ``IoUMetric``, and prints
one line starting with ``[mmseg]``.
"""
import argparse
import glob
import itertools
import logging
import os
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.runner import Runner

from dla_plugins.variants import resolve_variant

from .shipped_configs import get_config_file
from .synthetic import write_cityscapes_layout

__all__ = ['CITYSCAPES_CONFIG', 'tiny_config', 'majority_class_miou', 'run_demo', 'parse_demo_args', 'demo_main',
           'main']

CITYSCAPES_CONFIG = get_config_file('dla34_idaup_4xb2-80k_cityscapes-512x1024.py')
_RUNS = itertools.count()


def own_experiment(cfg: Config) -> Config:
    """Give ``cfg``'s run an ``experiment_name`` of its own, and its visualizer that name (returns ``cfg``).

    mmengine keeps one logger, message hub and visualizer per name in the process. mmseg's runtime config names its
    visualizer ``'visualizer'``, and the default experiment name is the config file plus the second the Runner
    starts, so a later run in the same process would reuse the first run's visualizer and write into its log folder.
    """
    stem = os.path.splitext(os.path.basename(cfg.filename))[0] if cfg.filename else 'run'
    cfg.experiment_name = f'{stem}_{os.getpid()}_{next(_RUNS)}'  # mmengine appends the start time
    if cfg.get('visualizer') is not None:
        cfg.visualizer.pop('name', None)  # the Runner then names it after the experiment
    return cfg


def tiny_config(config: Union[str, Config], data_root: str, work_dir: str, *, image_size: Tuple[int, int] = (64, 64),
                crop_size: Optional[Tuple[int, int]] = None, max_iters: int = 40, val_interval: Optional[int] = None,
                batch_size: int = 8, lr: float = 0.05, ratio_range: Tuple[float, float] = (0.75, 1.5),
                arch: Optional[str] = None, seed: int = 0) -> Config:
    """Shrink a shipped config to a CPU-sized run on ``data_root`` (whatever dataset type the config uses).

    Keeps the model, dataset type, split prefixes, metric and the standard pipeline's transforms; replaces sizes,
    iteration counts, batch size and workers (0), drops the ImageNet ``init_cfg`` and checkpoints only at the end.

    Tuned for learning from scratch in ~150 iterations: batches of 8 whole images (BatchNorm statistics from 2 crops
    are too noisy), a mild scale range (``ratio_range``) so shapes stay large, and the crop is the image size.
    """
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    h, w = image_size
    crop = crop_size or image_size
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=seed)
    cfg.log_level = 'WARNING'
    cfg.model.backbone.init_cfg = None
    if arch is not None:  # the head's widths follow the variant's level widths
        cfg.model.backbone.arch = arch
        channels = resolve_variant(arch).channels
        cfg.model.decode_head.in_channels = [channels[i] for i in cfg.model.backbone.out_indices]
    cfg.model.data_preprocessor.size = crop
    train_pipeline: List[Dict[str, Any]] = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='RandomResize', scale=(w, h), ratio_range=ratio_range, keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs'),
    ]
    test_pipeline: List[Dict[str, Any]] = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(w, h), keep_ratio=True),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs'),
    ]
    # the top-level pipelines too: mmseg.apis.inference_model reads cfg.test_pipeline, not the dataloader's
    cfg.train_pipeline, cfg.test_pipeline = train_pipeline, test_pipeline
    for key, pipeline, bs in (('train_dataloader', train_pipeline, batch_size), ('val_dataloader', test_pipeline, 1),
                              ('test_dataloader', test_pipeline, 1)):
        loader = cfg[key]
        loader.update(batch_size=bs, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=data_root, pipeline=pipeline)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval or max_iters)
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4))
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10, log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=max_iters)
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    return own_experiment(cfg)


def majority_class_miou(label_glob: str, ignore_index: int = 255) -> float:
    """mIoU of predicting the most frequent class everywhere (the chance level to beat), over the labels present."""
    counts = np.zeros(256, dtype=np.int64)
    paths = sorted(glob.glob(label_glob, recursive=True))
    if not paths:
        raise FileNotFoundError(f'label_glob: no file matches {label_glob!r}')
    for path in paths:
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if label is None or label.dtype != np.uint8:
            raise ValueError(f'label map {path!r}: not a readable 8-bit image')
        counts += np.bincount(label.ravel(), minlength=256)
    counts[ignore_index] = 0
    present = int((counts > 0).sum())
    return float(counts.max() / counts.sum() / present)


def run_demo(work_dir: Optional[str] = None, max_iters: int = 200, arch: str = 'dla46_c', train_images: int = 32,
             val_images: int = 8, seed: int = 0) -> Dict[str, float]:
    """Train ``arch`` + DLA-Up on synthetic shapes in the Cityscapes layout; returns mIoU (0-1), chance and seconds."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix='mmseg_ext_demo_') as tmp:
        # one large shape per 64x64 image (about 10% of the pixels): learnable from scratch in ~150 iterations
        root = write_cityscapes_layout(os.path.join(tmp, 'cityscapes'), dict(train=train_images, val=val_images),
                                       size=(64, 64), max_objects=1, seed=seed)
        cfg = tiny_config(CITYSCAPES_CONFIG, root, work_dir or os.path.join(tmp, 'work'), image_size=(64, 64),
                          max_iters=max_iters, arch=arch, seed=seed)
        runner = Runner.from_cfg(cfg)
        runner.train()
        metrics = runner.val_loop.run()
        chance = majority_class_miou(os.path.join(root, 'gtFine', 'val', '**', '*_labelTrainIds.png'))
    return dict(mIoU=metrics['mIoU'] / 100.0, chance=chance, seconds=time.time() - start, iters=max_iters)


def parse_demo_args(prog: str, description: str, iters: int, argv: Optional[List[str]] = None
                    ) -> argparse.Namespace:
    """The demos' command line (``--iters``, ``--arch``, ``--threads``), applied: torch threads set, mmengine's logger
    quiet (warnings only)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument('--iters', type=int, default=iters)
    p.add_argument('--arch', default='dla46_c')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads (default 1: tiny images are many small ops; threads mostly wait)')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    MMLogger.get_instance('mmengine', log_level='WARNING').setLevel(logging.WARNING)
    return args


def demo_main(prog: str, doc: str, iters: int, report: Callable[[argparse.Namespace, Dict[str, Any]], str],
              run: Callable[..., Dict[str, Any]], argv: Optional[List[str]] = None) -> int:
    """A demo entry: parse its arguments (:func:`parse_demo_args`), ``run(max_iters=, arch=)``, print ``report``."""
    args = parse_demo_args(prog, doc.splitlines()[0], iters, argv)
    print(report(args, run(max_iters=args.iters, arch=args.arch)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return demo_main('python -m mmseg_ext.demo', __doc__, 200, lambda args, res: (
        f"[mmseg] {args.arch} + DLAUpHead, mmengine Runner on synthetic shapes (Cityscapes layout): "
        f"val mIoU {res['mIoU']:.3f} (majority-class {res['chance']:.3f}) after {args.iters} iterations, "
        f"{res['seconds']:.0f}s"), run_demo, argv)


if __name__ == '__main__':
    sys.exit(main())
