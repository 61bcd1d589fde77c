"""Train/evaluate a detectron2 model with a DLA backbone: ``python -m d2_ext.train_net --config-file CFG [opts]``.

detectron2's ``DefaultTrainer`` + ``launch`` (one process per GPU, real DDP with ``--num-gpus N``); ``--eval-only``
evaluates ``MODEL.WEIGHTS``; ``--resume`` continues from the last checkpoint in ``OUTPUT_DIR``.
``--synthetic-shapes N`` trains on N synthetic shape images (4 classes) instead of ``DATASETS.*``.

Checkpoints (``model_*.pth`` and the ``last_checkpoint`` pointer) are written atomically by :class:`AtomicCheckpointer`:
a run killed at any moment resumes with ``--resume`` from the last complete checkpoint. A non-finite loss stops the run
with detectron2's own ``FloatingPointError`` ("Loss became infinite or NaN at iteration=N!") before the optimizer step,
and non-finite weights are never saved.

Bad input (the command line, the config file, overrides, the datasets, a model key; with several processes checked in
the launching process before the others start) is one line ``d2_ext.train_net: error: MESSAGE`` on stderr and exit
status 2; anything unexpected keeps its traceback and exits with status 1 (:mod:`dla_plugins.tools.errors`).
"""
import argparse
import os
import weakref
from typing import Any, List, Optional

import torch.distributed as dist
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.modeling import build_model
from detectron2.utils import comm

from dla_plugins.checkpoint import CheckpointError, detect_layout
from dla_plugins.convert import convert
from dla_plugins.data.synthetic import SHAPE_CLASSES
from dla_plugins.files import non_finite_keys, save_atomic, unwrap_state_dict
from dla_plugins.tools.errors import one_line_errors, run_entry

from .config import add_dlap_config, detectron2_input_error
from .data import check_datasets, register_shapes, write_shapes_coco
from .layout import LAYOUT as D2_LAYOUT

__all__ = ['Trainer', 'AtomicCheckpointer', 'argument_parser', 'setup', 'check', 'main', 'cli', 'SHAPES_TRAIN',
           'SHAPES_TEST']

PROG = 'd2_ext.train_net'
SHAPES_TRAIN, SHAPES_TEST = 'dlap_shapes_train', 'dlap_shapes_val'


class AtomicCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files are written atomically (temporary file, fsync, rename): a kill during a
    save leaves the previous checkpoint and ``last_checkpoint`` pointer intact. Refuses to save non-finite weights.
    Paths that are not local (``s3://`` ...) are written by detectron2's ``PathManager`` as before."""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk or '://' in self.save_dir:
            return super().save(name, **kwargs)
        data = dict(model=self.model.state_dict())
        bad = non_finite_keys(data['model'])
        if bad:
            raise FloatingPointError(f'checkpoint {name}: non-finite weights ({len(bad)} tensors, first {bad[0]!r}); '
                                     f'not saved, {self.get_checkpoint_file() or "no earlier checkpoint"} is kept')
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        path = os.path.join(self.save_dir, f'{name}.pth')
        self.logger.info(f'Saving checkpoint to {path}')
        save_atomic(data, path)
        self.tag_last_checkpoint(os.path.basename(path))

    def _load_file(self, filename: str) -> Any:
        """detectron2's reading, then a checkpoint of another codebase (CenterNet's ``{'epoch', 'state_dict'}``,
        ucbdrive, timm, mmdetection3d ... any layout ``dla-plugins convert`` recognises) converted for detectron2 as
        ``dlap://`` files are (:func:`dla_plugins.convert.convert`): ``MODEL.WEIGHTS`` may name the original file."""
        loaded = super()._load_file(filename)
        model = loaded.get('model')
        if not isinstance(model, dict) or filename.endswith('.pkl') or not _foreign(model):
            return loaded
        out = convert(filename, 'detectron2')
        self.logger.info(f'{filename}: converted from {out.report.layout} ({out.report.description})')
        return D2_LAYOUT.cached_checkpoint(out.state, out.report.layout, out.variant)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if '://' in self.save_dir:
            return super().tag_last_checkpoint(last_filename_basename)
        save_atomic(last_filename_basename.encode(), os.path.join(self.save_dir, 'last_checkpoint'))


def _foreign(state: dict) -> bool:
    """A state_dict of another codebase's DLA layout (not one detectron2 or we wrote for detectron2)."""
    try:
        layout = detect_layout(unwrap_state_dict(state, 'MODEL.WEIGHTS'))
    except (CheckpointError, ValueError):  # no DLA in it (another backbone's detectron2 weights): detectron2 decides
        return False
    return layout.host is None


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with COCO evaluation of every ``DATASETS.TEST`` entry (COCO-format datasets) and atomic
    checkpoints (:class:`AtomicCheckpointer`)."""

    def build_hooks(self) -> list:
        # DefaultTrainer.__init__ builds its DetectionCheckpointer just before calling build_hooks, whose
        # PeriodicCheckpointer hook takes self.checkpointer: swapping it here makes every save atomic.
        self.checkpointer = AtomicCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR,
                                               trainer=weakref.proxy(self))
        return super().build_hooks()

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
    """detectron2's ``default_argument_parser`` plus ``--synthetic-shapes N`` and ``--synthetic-size PX``; a bad command
    line is one line ``d2_ext.train_net: error: ...`` (exit status 2)."""
    p = default_argument_parser()
    p.add_argument('--synthetic-shapes', type=int, default=0, metavar='N',
                   help=f'write N synthetic shape images (+ max(4, N // 4) for testing) under OUTPUT_DIR/shapes, '
                        f'register them as {SHAPES_TRAIN}/{SHAPES_TEST} and use them as DATASETS.TRAIN/TEST with '
                        f'{len(SHAPE_CLASSES)} classes (opts still override)')
    p.add_argument('--synthetic-size', type=int, default=128, metavar='PX', help='synthetic image size (default 128)')
    return one_line_errors(p, PROG)


def _point_at_shapes(cfg: CfgNode, num_images: int, size: int) -> None:
    if num_images < 1 or size < 32:
        raise ValueError(f'--synthetic-shapes/--synthetic-size: need N >= 1 and PX >= 32, got {num_images}, {size}')
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (SHAPES_TRAIN,), (SHAPES_TEST,)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = cfg.MODEL.RETINANET.NUM_CLASSES = len(SHAPE_CLASSES)
    cfg.INPUT.MASK_FORMAT = 'bitmask'  # the shapes dataset stores RLE masks


def _register_shapes(cfg: CfgNode, num_images: int, size: int) -> None:
    """One process per machine (local rank 0) writes the shapes datasets, each file atomically; every process waits
    at a barrier until they are complete, then registers them."""
    root = os.path.join(cfg.OUTPUT_DIR, 'shapes')
    datasets = ((SHAPES_TRAIN, num_images, 0), (SHAPES_TEST, max(4, num_images // 4), 1))
    if comm.get_local_rank() == 0:
        for name, n, seed in datasets:
            write_shapes_coco(os.path.join(root, name), n, (size, size), seed=seed)
    comm.synchronize()
    for name, n, seed in datasets:
        register_shapes(name, os.path.join(root, name), n, size=(size, size), seed=seed, write=False)


def _config(args) -> CfgNode:
    """``MODEL.DLAP`` + ``args.config_file`` + ``args.opts``, pointed at the shapes with ``args.synthetic_shapes``;
    writes nothing."""
    cfg = get_cfg()
    add_dlap_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if getattr(args, 'synthetic_shapes', 0):
        _point_at_shapes(cfg, args.synthetic_shapes, args.synthetic_size)
        cfg.merge_from_list(args.opts)  # explicit opts win over the synthetic defaults
    return cfg


def setup(args) -> CfgNode:
    """Config from ``args.config_file`` and ``args.opts`` with ``MODEL.DLAP`` added (and the synthetic shapes
    datasets with ``args.synthetic_shapes``); frozen."""
    cfg = _config(args)
    if getattr(args, 'synthetic_shapes', 0):
        _register_shapes(cfg, args.synthetic_shapes, args.synthetic_size)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def check(args) -> CfgNode:
    """What the launching process checks before it starts a run: the config file, the overrides, the ``--synthetic-*``
    flags, the datasets the run reads, and with several processes the model (built once on the CPU), so that bad input
    fails once, in one line, not in every process. Returns the config."""
    cfg = _config(args)
    check_datasets(cfg, keys=('TEST',) if args.eval_only else ('TRAIN', 'TEST'),
                   skip=(SHAPES_TRAIN, SHAPES_TEST) if args.synthetic_shapes else ())
    if args.num_gpus * args.num_machines > 1:
        cpu = cfg.clone()
        cpu.MODEL.DEVICE = 'cpu'
        build_model(cpu)
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


def _main_then_close(args):
    """:func:`main`, then the process group destroyed: a gloo group left to interpreter exit can abort the process
    (``terminate called without an active exception``) after its work succeeded."""
    try:
        return main(args)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _check_and_launch(args) -> None:
    check(args)
    launch(_main_then_close, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


def cli(argv: Optional[List[str]] = None) -> None:
    """Parse ``argv`` (see :func:`argument_parser`), :func:`check` it, then :func:`main` in ``--num-gpus`` processes.
    Bad input is one line ``d2_ext.train_net: error: ...`` and exit status 2
    (:func:`dla_plugins.tools.errors.run_entry`)."""
    args = argument_parser().parse_args(argv)
    run_entry(PROG, lambda: _check_and_launch(args), detectron2_input_error)


if __name__ == '__main__':
    cli()
