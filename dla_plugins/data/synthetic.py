"""Learnable synthetic shapes for demos and tests: one generator for classification, detection and segmentation.

Each object is a filled shape (square, disk, triangle, plus) whose class decides the shape and, loosely, the hue,
on a noisy background. Pure torch, deterministic for a given seed.
"""
from dataclasses import dataclass
from typing import List, Tuple

import torch

__all__ = ['SHAPE_CLASSES', 'ShapesSample', 'render_shapes']

SHAPE_CLASSES = ('square', 'disk', 'triangle', 'plus')
_HUES = torch.tensor([[230, 60, 60], [60, 200, 60], [60, 90, 230], [220, 200, 50]], dtype=torch.float32)


@dataclass
class ShapesSample:
    """One image: ``image`` uint8 H x W x 3, ``mask`` int64 H x W (0 background, k+1 for class k), ``boxes``
    float N x 4 (x0, y0, x1, y1, exclusive ends), ``labels`` int64 N (class indices)."""

    image: torch.Tensor
    mask: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor


def _shape_mask(kind: int, yy: torch.Tensor, xx: torch.Tensor, cy: float, cx: float, r: float) -> torch.Tensor:
    dy, dx = yy - cy, xx - cx
    if kind == 0:
        return (dx.abs() <= r) & (dy.abs() <= r)
    if kind == 1:
        return dx * dx + dy * dy <= r * r
    if kind == 2:
        return (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
    t = r / 3
    return ((dx.abs() <= t) & (dy.abs() <= r)) | ((dy.abs() <= t) & (dx.abs() <= r))


def render_shapes(num_images: int, size: Tuple[int, int] = (64, 64), max_objects: int = 1, seed: int = 0,
                  num_classes: int = 4) -> List[ShapesSample]:
    """Render ``num_images`` images of ``size`` (H, W) with 1..``max_objects`` non-overlapping-ish shapes each."""
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f'num_classes: must be in 1..{len(SHAPE_CLASSES)}, got {num_classes}')
    if num_images < 0:
        raise ValueError(f'num_images: must be >= 0, got {num_images}')
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f'size: must be (height, width) with both >= 16, got {tuple(size)}')
    if max_objects < 1:
        raise ValueError(f'max_objects: must be >= 1, got {max_objects}')
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing='ij')
    out: List[ShapesSample] = []
    for _ in range(num_images):
        img = 90 + 40 * torch.rand(h, w, 3, generator=g)
        mask = torch.zeros(h, w, dtype=torch.int64)
        boxes, labels = [], []
        n = int(torch.randint(1, max_objects + 1, (1,), generator=g))
        for _ in range(n):
            k = int(torch.randint(num_classes, (1,), generator=g))
            r = float(min(h, w)) * (0.12 + 0.14 * float(torch.rand(1, generator=g))) / max(1.0, n ** 0.5)
            cy = r + float(torch.rand(1, generator=g)) * (h - 2 * r - 1)
            cx = r + float(torch.rand(1, generator=g)) * (w - 2 * r - 1)
            m = _shape_mask(k, yy, xx, cy, cx, r)
            if not m.any():
                continue
            colour = (_HUES[k] + 50 * (torch.rand(3, generator=g) - 0.5)).clamp(0, 255)
            img[m] = colour
            mask[m] = k + 1
            ys, xs = torch.nonzero(m, as_tuple=True)
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1])
            labels.append(k)
        out.append(ShapesSample(img.round().to(torch.uint8), mask, torch.tensor(boxes).reshape(-1, 4),
                                torch.tensor(labels, dtype=torch.int64)))
    return out
