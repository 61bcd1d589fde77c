"""CenterNet's ctdet training targets from boxes already in output coordinates (after the input affine): a Gaussian
peak per object on its class heatmap, and per object slot its size, sub-pixel offset, flat centre index and mask."""
import math
from typing import Dict, Sequence, Tuple, Union

import torch

from ._checks import check_int

BoxesLike = Union[torch.Tensor, Sequence[Sequence[float]]]


def gaussian_radius(det_size: Tuple[float, float], min_overlap: float = 0.7) -> float:
    """CenterNet's Gaussian radius for a (height, width) box: the smallest of its three quadratic roots (one per
    CornerNet corner case), computed as CenterNet writes them (the third is the smallest in practice)."""
    if not 0 < min_overlap < 1:
        raise ValueError(f'min_overlap: {min_overlap!r}; allowed: a float in (0, 1)')
    height, width = det_size
    a, side = min_overlap, height + width
    c1 = width * height * (1 - a) / (1 + a)
    r1 = (side + math.sqrt(side ** 2 - 4 * c1)) / 2
    c2 = (1 - a) * width * height
    r2 = (2 * side + math.sqrt((2 * side) ** 2 - 16 * c2)) / 2
    b3, c3 = -2 * a * side, (a - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 16 * a * c3)) / 2
    return min(r1, r2, r3)


def _gaussian(radius: int) -> torch.Tensor:
    """(2r+1)^2 Gaussian in float64, sigma = (2r+1)/6, peak 1. (CenterNet also zeroes values under float64 eps x
    peak; with this sigma the smallest value, at the corners, is above exp(-9), so none is ever that small.)"""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    r = torch.arange(-radius, radius + 1, dtype=torch.float64)
    return torch.exp(-(r[None, :] * r[None, :] + r[:, None] * r[:, None]) / (2 * sigma * sigma))


def draw_umich_gaussian(heatmap: torch.Tensor, center: Sequence[float], radius: int, k: float = 1) -> torch.Tensor:
    """Raise ``heatmap`` (H, W) in place to a Gaussian peak of ``radius`` at the integer ``center`` (x, y), clipped
    to the map; returns ``heatmap``."""
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    patch = heatmap[y - top:y + bottom, x - left:x + right]
    g = _gaussian(radius)[radius - top:radius + bottom, radius - left:radius + right]
    if min(g.shape) > 0 and min(patch.shape) > 0:
        torch.maximum(patch, (g * k).to(heatmap.dtype), out=patch)
    return heatmap


def _check_inputs(boxes: torch.Tensor, classes: torch.Tensor, num_classes: int, output_size: Sequence[int],
                  max_objs: int) -> None:
    check_int('num_classes', num_classes, 1, 'an int >= 1')
    check_int('max_objs', max_objs, 1, 'an int >= 1')
    if len(output_size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                        for s in output_size):
        raise ValueError(f'output_size: {tuple(output_size)!r}; allowed: (height, width), ints >= 1')
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not torch.isfinite(boxes).all():
        raise ValueError(f'boxes: shape {tuple(boxes.shape)}; allowed: (N, 4) finite x1, y1, x2, y2')
    if tuple(classes.shape) != (boxes.shape[0],) or classes.is_floating_point():
        raise ValueError(f'classes: shape {tuple(classes.shape)} {classes.dtype}; allowed: ({boxes.shape[0]},) ints')
    if len(classes) and not (0 <= int(classes.min()) and int(classes.max()) < num_classes):
        raise ValueError(f'classes: {classes.tolist()}; allowed: 0..{num_classes - 1}')


def ctdet_targets(boxes: BoxesLike, classes: Union[torch.Tensor, Sequence[int]], num_classes: int,
                  output_size: Tuple[int, int], max_objs: int = 128) -> Dict[str, torch.Tensor]:
    """Targets of one image, as CenterNet's ``CTDetDataset`` builds them after its affine.

    Boxes (N, 4) x1, y1, x2, y2 in output coordinates are rounded to float32 and clipped to the map; object ``k``
    (the first ``max_objs`` only) fills slot ``k`` if its clipped width and height are > 0 (else the slot stays
    zero): a Gaussian of radius ``int(gaussian_radius((ceil(h), ceil(w))))`` at the integer centre on ``hm[class]``,
    ``wh[k] = (w, h)``, ``reg[k] = centre - integer centre``, ``ind[k] = cy * W + cx``, ``reg_mask[k] = 1``.

    Returns:
        ``hm`` (num_classes, H, W) float32, ``wh`` and ``reg`` (max_objs, 2) float32, ``ind`` (max_objs,) int64,
        ``reg_mask`` (max_objs,) uint8.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).cpu()
    classes = torch.as_tensor(classes).cpu()
    _check_inputs(boxes, classes, num_classes, output_size, max_objs)
    height, width = output_size
    hm = torch.zeros(num_classes, height, width, dtype=torch.float32)
    wh = torch.zeros(max_objs, 2, dtype=torch.float32)
    reg = torch.zeros(max_objs, 2, dtype=torch.float32)
    ind = torch.zeros(max_objs, dtype=torch.int64)
    reg_mask = torch.zeros(max_objs, dtype=torch.uint8)
    for k in range(min(len(boxes), max_objs)):
        x1, x2 = boxes[k, [0, 2]].clamp(0, width - 1)
        y1, y2 = boxes[k, [1, 3]].clamp(0, height - 1)
        h, w = y2 - y1, x2 - x1
        if not (h > 0 and w > 0):
            continue
        radius = max(0, int(gaussian_radius((math.ceil(float(h)), math.ceil(float(w))))))
        ct = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2])
        cx, cy = int(ct[0]), int(ct[1])
        draw_umich_gaussian(hm[int(classes[k])], (cx, cy), radius)
        wh[k, 0], wh[k, 1] = w, h
        ind[k] = cy * width + cx
        reg[k] = ct - torch.tensor([cx, cy], dtype=torch.float32)
        reg_mask[k] = 1
    return {'hm': hm, 'wh': wh, 'reg': reg, 'ind': ind, 'reg_mask': reg_mask}
