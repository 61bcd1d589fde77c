"""``python -m mmseg_ext.eval_boundary PRED_DIR GT_DIR``: the BSDS boundary benchmark (ODS, OIS, AP) on saved files.

``PRED_DIR`` holds one boundary map per image: ``<id>.png`` (8-bit, strength = value / 255, as written by
``BoundaryMetric(output_dir=...)`` or HED/RCF) or ``<id>.npy`` (float in [0, 1]). ``GT_DIR`` holds ``<id>.mat`` BSDS
ground truth (every annotator) or ``<id>.png`` boundary maps (non-zero = boundary). Each ground truth needs its
prediction. The evaluation is :mod:`mmseg_ext.boundary.evaluation` (docs/boundary.md), as ``BoundaryMetric``.
"""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional

import cv2
import numpy as np

from dla_plugins.tools.errors import one_line_errors, run_cli

from .boundary.bsds import read_bsds_boundaries
from .boundary.evaluation import BSDS_MAX_DIST, MATCHERS, default_thresholds, evaluate_many, summarize

__all__ = ['main', 'build_parser', 'evaluate_dirs', 'read_prediction']

PROG = 'python -m mmseg_ext.eval_boundary'


def read_prediction(path: str) -> np.ndarray:
    """Boundary strength in [0, 1] from an 8-bit image (value / 255) or a ``.npy`` float array."""
    if path.endswith('.npy'):
        p = np.load(path, allow_pickle=False).astype(np.float64)
        if p.ndim != 2 or not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f'prediction {path!r}: a 2-d array of values in [0, 1] expected')
        return p
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8:
        raise ValueError(f'prediction {path!r}: not a readable 8-bit image')
    return (img if img.ndim == 2 else img[..., 0]) / 255.0


def _read_gt(path: str) -> List[np.ndarray]:
    if path.endswith('.mat'):
        return read_bsds_boundaries(path)
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'ground truth {path!r}: not a readable image')
    return [(img if img.ndim == 2 else img[..., 0]) > 0]


def evaluate_dirs(pred_dir: str, gt_dir: str, thresholds=99, max_dist: float = BSDS_MAX_DIST, nms: bool = True,
                  thin: bool = True, matcher: str = 'scipy', nproc: int = 1) -> Dict[str, float]:
    """ODS / OIS / AP (and ``images``) of the predictions in ``pred_dir`` against the ground truth in ``gt_dir``."""
    for what, d in (('PRED_DIR', pred_dir), ('GT_DIR', gt_dir)):
        if not os.path.isdir(d):
            raise FileNotFoundError(f'{what}: no such folder {d!r}')
    gts = sorted(f for f in os.listdir(gt_dir) if f.endswith(('.mat', '.png')))
    if not gts:
        raise FileNotFoundError(f'GT_DIR: no .mat or .png ground truth in {gt_dir!r}')
    preds = {os.path.splitext(f)[0]: f for f in sorted(os.listdir(pred_dir), reverse=True)
             if f.endswith(('.png', '.npy'))}  # reverse: a .png wins over a .npy of the same image
    missing = [g for g in gts if os.path.splitext(g)[0] not in preds]
    if missing:
        raise FileNotFoundError(f'PRED_DIR: {len(missing)} of {len(gts)} image(s) have no prediction (<id>.png or '
                                f'<id>.npy), e.g. {os.path.splitext(missing[0])[0]!r}')
    ts = default_thresholds(thresholds)
    jobs = []
    for g in gts:
        pred_path = os.path.join(pred_dir, preds[os.path.splitext(g)[0]])
        pred, truth = read_prediction(pred_path), _read_gt(os.path.join(gt_dir, g))
        if pred.shape != truth[0].shape:
            raise ValueError(f'prediction {pred_path!r}: shape {pred.shape} differs from its ground truth '
                             f'{truth[0].shape}')
        jobs.append(((pred, truth), dict(thresholds=ts, max_dist=max_dist, nms=nms, apply_thin=thin,
                                         matcher=matcher)))
    res = summarize(evaluate_many(jobs, nproc), ts)
    res['images'] = len(jobs)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = one_line_errors(argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0]))
    p.add_argument('pred_dir', metavar='PRED_DIR', help='<id>.png (8-bit) or <id>.npy boundary maps')
    p.add_argument('gt_dir', metavar='GT_DIR', help='<id>.mat (BSDS groundTruth) or <id>.png boundary maps')
    p.add_argument('--thresholds', type=int, default=99, help='number of thresholds (default 99, the benchmark)')
    p.add_argument('--max-dist', type=float, default=BSDS_MAX_DIST, help='tolerance, fraction of the diagonal')
    p.add_argument('--no-nms', dest='nms', action='store_false', help='predictions are already thin (NMS done)')
    p.add_argument('--no-thin', dest='thin', action='store_false', help='do not thin the thresholded maps')
    p.add_argument('--matcher', choices=list(MATCHERS), default='scipy',
                   help="'scipy' (exact assignment, default) or 'pyedgeeval' (the benchmark's CSA; extra boundary)")
    p.add_argument('--nproc', type=int, default=1, help='processes')
    p.add_argument('--json', help='also write the results to this JSON file')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    res = evaluate_dirs(args.pred_dir, args.gt_dir, args.thresholds, args.max_dist, args.nms, args.thin,
                        args.matcher, args.nproc)
    print(f"[eval_boundary] {res['images']} images: ODS {res['ODS']:.4f} (threshold {res['ODS_threshold']:.3f}, "
          f"P {res['ODS_precision']:.4f}, R {res['ODS_recall']:.4f}), OIS {res['OIS']:.4f}, AP {res['AP']:.4f}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(PROG, main))
