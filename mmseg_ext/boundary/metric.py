"""``BoundaryMetric``: the BSDS boundary benchmark (ODS, OIS, AP) as an mmengine metric."""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine import fileio
from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmseg.registry import METRICS

from .bsds import read_bsds_boundaries
from .evaluation import (
    BSDS_MAX_DIST,
    MATCHERS,
    Thresholds,
    default_thresholds,
    evaluate_many,
    f_measure,
    precision_recall,
    summarize,
)

__all__ = ['BoundaryMetric', 'edge_probability', 'quantize']

GT_MODES = ('auto', 'annotators', 'label')


def edge_probability(seg_logits: torch.Tensor) -> np.ndarray:
    """Boundary probability (H x W) from mmseg's ``seg_logits`` of one image: softmax channel 1 of 2 channels, or
    the single channel, which mmseg 1.x has already passed through a sigmoid."""
    c = seg_logits.shape[0]
    if c == 2:
        return seg_logits.float().softmax(0)[1].cpu().numpy()
    if c == 1:
        return seg_logits[0].float().cpu().numpy()
    raise ValueError(f'seg_logits: a boundary model predicts 1 or 2 channels, got {c}')


def quantize(prob: np.ndarray) -> np.ndarray:
    """Edge strength as the 8-bit PNG the benchmark reads: ``round(255 * p)`` (uint8)."""
    return np.round(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)


@METRICS.register_module()
class BoundaryMetric(BaseMetric):
    """ODS / OIS / AP of the BSDS benchmark, or precision / recall / F at one fixed threshold (the cheap check
    during training).

    Each image's boundary probability is rounded to 8 bits (as the PNG files the benchmark reads; ``output_dir``
    writes them), optionally suppressed (edge NMS), thresholded, thinned and matched to each annotator within
    ``max_dist`` x the image diagonal (:mod:`mmseg_ext.boundary.evaluation`). Scores are in [0, 1].

    Args:
        thresholds: A count (99: the benchmark's 0.01 ... 0.99) reported as ``ODS``, ``OIS``, ``AP`` (plus
            ``ODS_threshold``, ``ODS_precision``, ``ODS_recall``); or a list of one value, e.g. ``[0.5]``, reported as
            ``F``, ``precision``, ``recall``.
        max_dist: Matching tolerance as a fraction of the image diagonal.
        nms: Edge NMS before thresholding; ``nms_kwargs`` go to :func:`~mmseg_ext.boundary.evaluation.edge_nms`.
        thin: Thin each thresholded map (the benchmark does).
        gt: 'annotators' reads every annotator from the sample's ``seg_map_path`` (a BSDS .mat; the benchmark's way),
            'label' takes the sample's label map (1 = boundary; predictions on ``ignore_index`` pixels count neither
            way), 'auto' the first for .mat files, else the second.
        matcher: 'scipy' (exact assignment) or 'pyedgeeval' (the benchmark's CSA code, extra ``boundary``).
        nproc: Processes for the evaluation at the end (1: each image is evaluated as it arrives).
        output_dir: Also write ``<image stem>.png`` (8-bit boundary strength) there, for
            ``python -m mmseg_ext.eval_boundary``.
        ignore_index: The label map's ignore value ('label' mode).
        collect_device: mmengine's device for gathering results across ranks.
        prefix: mmengine's metric name prefix.
    """

    default_prefix: Optional[str] = None

    def __init__(self, thresholds: Thresholds = 99, max_dist: float = BSDS_MAX_DIST, nms: bool = True,
                 thin: bool = True, nms_kwargs: Optional[Dict[str, Any]] = None, gt: str = 'auto',
                 matcher: str = 'scipy', nproc: int = 1, output_dir: Optional[str] = None, ignore_index: int = 255,
                 collect_device: str = 'cpu', prefix: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.thresholds = default_thresholds(thresholds)
        if not 0 < max_dist < 1:
            raise ValueError(f'max_dist: a fraction of the image diagonal in (0, 1) expected, got {max_dist!r}')
        if gt not in GT_MODES:
            raise ValueError(f'gt: unknown ground-truth mode {gt!r}; allowed: {list(GT_MODES)}')
        if matcher not in MATCHERS:
            raise ValueError(f'matcher: unknown {matcher!r}; allowed: {list(MATCHERS)}')
        if not isinstance(nproc, int) or nproc < 1:
            raise ValueError(f'nproc: must be an integer >= 1, got {nproc!r}')
        if kwargs:
            raise ValueError(f'BoundaryMetric: unknown arguments {sorted(kwargs)}')
        self.eval_kwargs = dict(thresholds=self.thresholds, max_dist=max_dist, nms=nms, apply_thin=thin,
                                nms_kwargs=nms_kwargs, matcher=matcher)
        self.gt, self.nproc, self.output_dir, self.ignore_index = gt, nproc, output_dir, ignore_index
        if output_dir and is_main_process():
            os.makedirs(output_dir, exist_ok=True)

    def _ground_truth(self, sample: dict, shape: Tuple[int, int]) -> Tuple[List[np.ndarray], Optional[np.ndarray]]:
        path = sample.get('seg_map_path') or ''
        mode = self.gt if self.gt != 'auto' else ('annotators' if path.lower().endswith('.mat') else 'label')
        if mode == 'annotators':
            gts, ignore = read_bsds_boundaries(fileio.get(path)), None
        else:
            label = sample['gt_sem_seg']['data'].squeeze(0).cpu().numpy()
            gts, ignore = [label == 1], label == self.ignore_index
        if gts[0].shape != shape:
            raise ValueError(f'ground truth {path!r}: shape {gts[0].shape} differs from the prediction {shape} '
                             f'(predictions are resized to ori_shape; keep ground truth at the image size)')
        return gts, ignore

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Evaluate (or, with ``nproc`` > 1, queue) each image of the batch."""
        for sample in data_samples:
            strength = quantize(edge_probability(sample['seg_logits']['data']))
            gts, ignore = self._ground_truth(sample, strength.shape)
            if self.output_dir:
                stem = osp.splitext(osp.basename(sample['img_path']))[0]
                cv2.imwrite(osp.join(self.output_dir, f'{stem}.png'), strength)
            job = ((strength / 255.0, gts), dict(self.eval_kwargs, ignore=ignore))
            self.results.append(job if self.nproc > 1 else evaluate_many([job])[0])

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """ODS/OIS/AP (several thresholds) or F/precision/recall (one threshold) over every image."""
        jobs = [i for i, r in enumerate(results) if isinstance(r, tuple)]
        if jobs:
            for i, counts in zip(jobs, evaluate_many([results[i] for i in jobs], self.nproc)):
                results[i] = counts
        if self.thresholds.size > 1:
            return summarize(results, self.thresholds)
        p, r = precision_recall(np.stack(results).sum(0)[0])
        return dict(F=float(f_measure(p, r)), precision=float(p), recall=float(r))
