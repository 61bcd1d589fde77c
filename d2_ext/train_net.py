"""Train/evaluate a detectron2 model with a DLA backbone: ``python -m d2_ext.train_net --config-file CFG [opts]``.

detectron2's ``DefaultTrainer`` + ``launch`` (one process per GPU, real DDP with ``--num-gpus N``); ``--eval-only``
evaluates ``MODEL.WEIGHTS``; ``--resume`` continues from the last checkpoint in ``OUTPUT_DIR``.
``--synthetic-shapes N`` trains on N synthetic shape images (4 classes) instead of ``DATASETS.*``.
"""
import argparse
import os
from typing import List, Optional

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.utils import comm

from dla_plugins.tools.synthetic import SHAPE_CLASSES

from .config import add_dlap_config
from .data import register_shapes

__all__ = ['Trainer', 'argument_parser', 'setup', 'main', 'cli', 'SHAPES_TRAIN', 'SHAPES_TEST']

SHAPES_TRAIN, SHAPES_TEST = 'dlap_shapes_train', 'dlap_shapes_val'


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with COCO evaluation of every ``DATASETS.TEST`` entry (COCO-format datasets)."""

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None
                        ) -> DatasetEvaluator:
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, 'inference')
        tasks = ('bbox', 'segm') if cfg.MODEL.MASK_ON else ('bbox',)
        return COCOEvaluator(dataset_name, tasks=tasks, output_dir=output_folder)

    def train(self) -> Optional[dict]:
        """Train; returns the final evaluation results (``{}`` without ``DATASETS.TEST``)."""
        super().train()
        return getattr(self, '_last_eval_results', {})


def argument_parser() -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` plus ``--synthetic-shapes N`` and ``--synthetic-size PX``."""
    p = default_argument_parser()
    p.add_argument('--synthetic-shapes', type=int, default=0, metavar='N',
                   help=f'write N synthetic shape images (+ max(4, N // 4) for testing) under OUTPUT_DIR/shapes, '
                        f'register them as {SHAPES_TRAIN}/{SHAPES_TEST} and use them as DATASETS.TRAIN/TEST with '
                        f'{len(SHAPE_CLASSES)} classes (opts still override)')
    p.add_argument('--synthetic-size', type=int, default=128, metavar='PX', help='synthetic image size (default 128)')
    return p


def _use_shapes(cfg: CfgNode, num_images: int, size: int) -> None:
    if num_images < 1 or size < 32:
        raise ValueError(f'--synthetic-shapes/--synthetic-size: need N >= 1 and PX >= 32, got {num_images}, {size}')
    root = os.path.join(cfg.OUTPUT_DIR, 'shapes')
    write = comm.get_local_rank() == 0  # one writer per machine, the others wait and register the same files
    for name, n, seed in ((SHAPES_TRAIN, num_images, 0), (SHAPES_TEST, max(4, num_images // 4), 1)):
        register_shapes(name, os.path.join(root, name), n, size=(size, size), seed=seed, write=write)
    comm.synchronize()
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (SHAPES_TRAIN,), (SHAPES_TEST,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = cfg.MODEL.RETINANET.NUM_CLASSES = len(SHAPE_CLASSES)
    cfg.INPUT.MASK_FORMAT = 'bitmask'  # the shapes dataset stores RLE masks


def setup(args) -> CfgNode:
    """Config from ``args.config_file`` and ``args.opts`` with ``MODEL.DLAP`` added (and the synthetic shapes
    datasets with ``args.synthetic_shapes``); frozen."""
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if getattr(args, 'synthetic_shapes', 0):
        _use_shapes(cfg, args.synthetic_shapes, args.synthetic_size)
        cfg.merge_from_list(args.opts)  # explicit opts win over the synthetic defaults
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` (see :func:`argument_parser`) and :func:`main` in ``--num-gpus`` processes."""
    args = argument_parser().parse_args(argv)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == '__main__':
    cli()
