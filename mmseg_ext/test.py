"""``python -m mmseg_ext.test CONFIG CKPT``: evaluate a checkpoint on the config's test set with mmengine's Runner."""
import argparse
import os
import sys
from typing import List, Optional

from mmengine.runner import Runner

from dla_plugins.tools.errors import one_line_errors, run_cli

from .dist import prepare_launcher
from .entry import CfgOptionsAction, check_data_roots, check_file
from .train import load_config

__all__ = ['main', 'build_parser']

PROG = 'python -m mmseg_ext.test'


def build_parser() -> argparse.ArgumentParser:
    p = one_line_errors(argparse.ArgumentParser(prog=PROG, description='Evaluate an mmseg checkpoint.'))
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint saved by mmengine (or a state_dict of the whole segmentor)')
    p.add_argument('--work-dir', help='where the evaluation log goes (default: work_dirs/<config name>)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default=None, help='override config keys')
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg.load_from, cfg.resume = check_file('checkpoint', args.checkpoint), False
    check_data_roots(cfg, ('test_dataloader',))
    prepare_launcher(cfg)
    cfg.model.backbone.pop('init_cfg', None)  # the checkpoint holds every weight
    metrics = Runner.from_cfg(cfg).test()
    print('[mmseg_ext.test] ' + ', '.join(f'{k}: {v}' for k, v in metrics.items()))
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(PROG, main))
