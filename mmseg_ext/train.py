"""``python -m mmseg_ext.train CONFIG``: train a segmentor with mmengine's Runner (single process or ``torchrun``).

Examples::

    python -m mmseg_ext.train configs/mmseg/dla34_idaup_cityscapes_512x1024.py --work-dir work_dirs/dla34
    torchrun --nproc_per_node 8 -m mmseg_ext.train CONFIG --launcher pytorch
    python -m mmseg_ext.train CONFIG --resume                  # latest checkpoint in the work dir
    python -m mmseg_ext.train CONFIG --resume work_dirs/x/iter_4000.pth

Checkpoints are written atomically and a non-finite loss stops the run before anything is saved
(:mod:`mmseg_ext.checkpointing`); ``--resume`` without a value takes the checkpoint named by ``last_checkpoint``, or
the newest ``iter_N.pth`` when a kill left that pointer torn.
"""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config
from mmengine.runner import Runner

from dla_plugins.tools.errors import one_line_errors, run_cli

from .checkpointing import latest_checkpoint, protect_config
from .dist import prepare_launcher
from .entry import CfgOptionsAction, check_data_roots, check_file

__all__ = ['main', 'build_parser', 'load_config', 'enable_amp']

PROG = 'python -m mmseg_ext.train'


def build_parser() -> argparse.ArgumentParser:
    p = one_line_errors(argparse.ArgumentParser(prog=PROG, description='Train an mmseg model (DLA plugins).'))
    p.add_argument('config', help='config file')
    p.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or without a value from the latest checkpoint in the work dir')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                   help="'pytorch' under torchrun")
    p.add_argument('--amp', action='store_true',
                   help="mixed precision: the config's OptimWrapper becomes an AmpOptimWrapper (CUDA only; dtype via "
                        "--cfg-options optim_wrapper.dtype=bfloat16)")
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default=None,
                   help='override config keys, e.g. train_cfg.max_iters=1000 model.backbone.with_cp=True')
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return p


def load_config(path: str, cfg_options: Optional[dict] = None, launcher: str = 'none',
                work_dir: Optional[str] = None) -> Config:
    """Read ``path``, apply ``cfg_options``, set the launcher and the work dir (CLI > config > config name).

    Raises:
        FileNotFoundError: ``path`` does not exist (``config: no such file ...``).
    """
    cfg = Config.fromfile(check_file('config', path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def enable_amp(cfg: Config) -> None:
    """Turn the config's ``OptimWrapper`` into mmengine's ``AmpOptimWrapper`` (dynamic loss scale; fp16 unless the
    config sets ``optim_wrapper.dtype``)."""
    kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if kind not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise ValueError(f"--amp: optim_wrapper.type must be 'OptimWrapper' or 'AmpOptimWrapper', got {kind!r}")
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':  # mmengine would trust last_checkpoint even when a kill left it empty
        cfg.resume, cfg.load_from = True, latest_checkpoint(cfg.work_dir)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, check_file('--resume', args.resume, 'checkpoint')
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    prepare_launcher(cfg)
    protect_config(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(PROG, main))
