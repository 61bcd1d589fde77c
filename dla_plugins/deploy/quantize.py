"""Reduced precision for an exported ONNX file: an fp16 graph and int8 post-training static quantization (QDQ).

int8 is onnxruntime's static quantization in the QDQ format (``QuantizeLinear``/``DequantizeLinear`` pairs around
each quantized tensor; weights int8 per output channel, activations int8 calibrated by min/max over a calibration
set), not OpenVINO's NNCF: the one file runs in onnxruntime, in OpenVINO (its ONNX frontend reads QDQ pairs and its
low-precision transformations execute the convolutions in int8) and in TensorRT (explicit quantization), and it needs
no package beyond onnxruntime (NNCF would add its own dependency tree for the same min/max PTQ).
Deformable nodes (``DeformConv``, OpenVINO's ``DeformableConv2D``) stay fp32 in both forms: no runtime here has a
reduced-precision kernel for them on the CPU.

:func:`agreement` compares a reduced-precision model with the fp32 one on a held-out batch: top-1 agreement for a
classifier, mIoU of the argmax maps for DLASeg (the fp32 map taken as ground truth), detections found again
for CenterNet.
"""
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from .._extras import require

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'KEEP_FP32_OPS', 'calibration_images', 'to_fp16', 'quantize_int8',
           'agreement']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KEEP_FP32_OPS = ('DeformConv', 'DeformableConv2D')
_IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')


def calibration_images(source: Optional[Union[str, os.PathLike]] = None, num: int = 32,
                       img_size: Tuple[int, int] = (224, 224), seed: int = 0) -> np.ndarray:
    """``num`` normalised images (N, 3, H, W) float32: the first ``num`` files of an image folder (sorted; resized
    to ``img_size``) or, with ``source`` None, the synthetic shapes set (:func:`~dla_plugins.data.render_shapes`).

    Raises:
        ValueError: ``source`` is not a folder with at least one image.
    """
    import torch

    if source is None:
        from ..data import render_shapes

        imgs = torch.stack([s.image.permute(2, 0, 1) for s in render_shapes(num, img_size, max_objects=3, seed=seed)])
    else:
        folder = Path(source)
        files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in _IMAGE_SUFFIXES) if folder.is_dir() else []
        if not files:
            raise ValueError(f'calibration: no {"/".join(_IMAGE_SUFFIXES)} images under {os.fspath(source)!r}; '
                             'allowed: a folder of images, or none for the synthetic set')
        tv_io = require('torchvision.io', 'export', 'calibration on an image folder')
        resize = torch.nn.functional.interpolate
        imgs = torch.cat([resize(tv_io.read_image(str(p), tv_io.ImageReadMode.RGB)[None].float(), size=img_size,
                                 mode='bilinear', antialias=True, align_corners=False) for p in files[:num]])
    x = imgs.float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    return x.numpy().astype(np.float32)


def to_fp16(src: Union[str, os.PathLike], dst: Union[str, os.PathLike]) -> str:
    """Write ``src`` as an fp16 graph (weights and activations) with fp32 inputs/outputs; deformable nodes and
    resizes stay fp32 (onnxruntime's float16 converter, ``keep_io_types``)."""
    onnx = require('onnx', 'export', 'fp16 export')
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = convert_float_to_float16(onnx.load(os.fspath(src)), keep_io_types=True,
                                     op_block_list=list(DEFAULT_OP_BLOCK_LIST) + list(KEEP_FP32_OPS))
    onnx.save(model, os.fspath(dst))
    return os.fspath(dst)


def quantize_int8(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], calibration: np.ndarray,
                  per_channel: bool = True, symmetric: bool = False) -> str:
    """Static int8 QDQ quantization of ``src`` (a graph onnxruntime runs: it calibrates) on ``calibration``
    (N, 3, H, W), written to ``dst``. Activations are uint8 with a zero point (onnxruntime's and OpenVINO's fast
    x86 path), or with ``symmetric`` int8 with zero point 0 (what TensorRT's QuantizeLinear requires)."""
    quant = require('onnxruntime.quantization', 'export', 'int8 quantization')

    class _Reader(quant.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration[i:i + 1] for i in range(len(calibration)))

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            x = next(self._batches, None)
            return None if x is None else {'images': x}

    quant.quantize_static(os.fspath(src), os.fspath(dst), _Reader(), quant_format=quant.QuantFormat.QDQ,
                          per_channel=per_channel,
                          activation_type=quant.QuantType.QInt8 if symmetric else quant.QuantType.QUInt8,
                          weight_type=quant.QuantType.QInt8, calibrate_method=quant.CalibrationMethod.MinMax,
                          op_types_to_quantize=None, nodes_to_exclude=None,
                          extra_options={'ActivationSymmetric': symmetric, 'WeightSymmetric': True})
    return os.fspath(dst)


def agreement(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], task: str) -> Dict[str, float]:
    """How far ``got`` (reduced precision) agrees with ``ref`` (fp32) on one batch, for ``task``:

    - 'classifier': ``top1`` (fraction of images with the same argmax class) and ``max_abs`` of the logits;
    - 'seg': ``miou`` of the argmax maps with ``ref``'s as ground truth (classes present in either) and
      ``pixel`` (fraction of equal pixels);
    - 'centernet': ``det``, the fraction of the fp32 model's 20 best detections per image found again (same class,
      IoU >= 0.5 or the same centre), and ``score_abs`` (outputs: raw heads hm/wh/reg, decoded here, or
      boxes/scores/classes);
    - 'backbone' / 'features': ``max_abs`` and ``rel`` (max abs difference over max abs value) per all outputs.
    """
    if task == 'classifier':
        r, g = ref[0], got[0]
        return dict(top1=float((r.argmax(1) == g.argmax(1)).mean()), max_abs=float(np.abs(r - g).max()))
    if task == 'seg':
        r, g = ref[0].argmax(1), got[0].argmax(1)
        ious = [float(((r == c) & (g == c)).sum() / ((r == c) | (g == c)).sum())
                for c in np.union1d(np.unique(r), np.unique(g))]
        return dict(miou=float(np.mean(ious)), pixel=float((r == g).mean()))
    if task == 'centernet':
        return _detection_agreement(ref, got)
    if task in ('backbone', 'features'):
        worst = max(float(np.abs(r - g).max()) for r, g in zip(ref, got))
        scale = max(float(np.abs(r).max()) for r in ref)
        return dict(max_abs=worst, rel=worst / max(scale, 1e-12))
    raise ValueError(f"task: unknown agreement task {task!r}; allowed: ['classifier', 'seg', 'centernet', 'backbone', "
                     "'features']")


def _detections(out: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, classes) of a detector export: decoded in the graph, or raw heads decoded here."""
    if len(out) == 3 and np.issubdtype(out[2].dtype, np.integer):
        return out[0], out[1], out[2]
    import torch

    from ..centernet import ctdet_decode

    hm, wh = torch.from_numpy(out[0]), torch.from_numpy(out[1])
    reg = torch.from_numpy(out[2]) if len(out) > 2 else None
    boxes, scores, classes = ctdet_decode(hm.sigmoid(), wh, reg, K=min(100, hm.shape[2] * hm.shape[3]))
    return boxes.numpy(), scores.numpy(), classes.numpy()


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2:] - boxes[..., :2], 0, None).prod(-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (N, 4) against ``b`` (M, 4), x1 y1 x2 y2 -> (N, M)."""
    inter = _area(np.concatenate([np.maximum(a[:, None, :2], b[None, :, :2]),
                                  np.minimum(a[:, None, 2:], b[None, :, 2:])], -1))
    return inter / np.maximum(_area(a)[:, None] + _area(b)[None] - inter, 1e-12)


def _detection_agreement(ref: Sequence[np.ndarray], got: Sequence[np.ndarray], top: int = 20) -> Dict[str, float]:
    """``det``: fraction of the fp32 model's ``top`` best detections per image among the other's ``top`` (same
    class, and IoU >= 0.5 or centres at most one unit apart: one heatmap cell for raw heads, one pixel for decoded
    boxes, so that tiny boxes of untrained size heads still match by their peak); ``score_abs``: the largest score
    difference of those matches."""
    (rb, rs, rc), (gb, gs, gc) = _detections(ref), _detections(got)
    found, total, worst = 0, 0, 0.0
    for i in range(len(rb)):
        k = min(top, rb.shape[1])
        centre_r, centre_g = (rb[i, :k, :2] + rb[i, :k, 2:]) / 2, (gb[i, :k, :2] + gb[i, :k, 2:]) / 2
        near = np.linalg.norm(centre_r[:, None] - centre_g[None], axis=-1) <= 1.0
        iou = np.maximum(_iou(rb[i, :k], gb[i, :k]), near * 0.5) * (rc[i, :k, None] == gc[i, :k][None])
        hit = iou.max(1) >= 0.5
        found, total = found + int(hit.sum()), total + k
        if hit.any():
            worst = max(worst, float(np.abs(rs[i, :k][hit] - gs[i, :k][iou.argmax(1)][hit]).max()))
    return dict(det=found / total, score_abs=worst)
