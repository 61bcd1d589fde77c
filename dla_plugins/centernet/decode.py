"""CenterNet's ctdet decoder: 3x3 max-pool peak picking, the top K peaks over all classes, box = peak + sub-pixel
offset -/+ half the regressed size, at the output stride (multiply by the stride for input pixels)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ._checks import check_int


def gather_at(feat: torch.Tensor, ind: torch.Tensor) -> torch.Tensor:
    """``feat`` (B, C, H, W) read at flat positions ``ind`` (B, K) (``y * W + x``) -> (B, K, C)."""
    b, c = feat.shape[:2]
    flat = feat.reshape(b, c, -1)
    return flat.gather(2, ind.unsqueeze(1).expand(b, c, ind.shape[1])).transpose(1, 2)


def _peaks(heat: torch.Tensor, kernel: int = 3) -> torch.Tensor:
    """Scores that equal the max of their kernel x kernel window (ties all kept), others 0."""
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (hmax == heat).float()


def _topk(scores: torch.Tensor, k: int) -> Tuple[torch.Tensor, ...]:
    """Top ``k`` per class, then top ``k`` of those (CenterNet's two-stage order, so ties break the same way).
    Returns scores, flat positions, classes, ys, xs, each (B, k)."""
    b, c, h, w = scores.shape
    per_class, per_class_ind = torch.topk(scores.reshape(b, c, h * w), k)
    top, order = torch.topk(per_class.reshape(b, c * k), k)
    classes = torch.div(order, k, rounding_mode='floor')
    ind = per_class_ind.reshape(b, c * k).gather(1, order)
    ys = torch.div(ind, w, rounding_mode='floor').float()
    xs = (ind % w).float()
    return top, ind, classes, ys, xs


def _check_map(name: str, t: Optional[torch.Tensor], like: torch.Tensor) -> None:
    b, _, h, w = like.shape
    if t is not None and (t.dim() != 4 or tuple(t.shape) != (b, 2, h, w)):
        raise ValueError(f"{name}: shape {tuple(t.shape)}; allowed: ({b}, 2, {h}, {w}) (hm's batch and size)")


def ctdet_decode(hm: torch.Tensor, wh: torch.Tensor, reg: Optional[torch.Tensor] = None,
                 K: int = 100) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``K`` best detections per image, as CenterNet's ``ctdet_decode``.

    Args:
        hm: class scores (B, C, H, W) AFTER the sigmoid (CenterNet's detector applies ``sigmoid_()`` first).
        wh: box width/height (B, 2, H, W) at the output stride.
        reg: sub-pixel centre offset (B, 2, H, W); None uses the pixel centre (+0.5).
        K: detections per image, 1..H*W.

    Returns:
        boxes (B, K, 4) as x1, y1, x2, y2 at the output stride, scores (B, K) best first, classes (B, K) int64.
    """
    if hm.dim() != 4:
        raise ValueError(f'hm: shape {tuple(hm.shape)}; allowed: (batch, classes, height, width)')
    _check_map('wh', wh, hm)
    _check_map('reg', reg, hm)
    b, _, h, w = hm.shape
    check_int('K', K, 1, f'1..{h * w} (height x width of hm)', high=h * w)
    scores, ind, classes, ys, xs = _topk(_peaks(hm), K)
    if reg is not None:
        off = gather_at(reg, ind)
        xs, ys = xs + off[..., 0], ys + off[..., 1]
    else:
        xs, ys = xs + 0.5, ys + 0.5
    size = gather_at(wh, ind)
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    boxes = torch.stack([xs - half_w, ys - half_h, xs + half_w, ys + half_h], dim=2)
    return boxes, scores, classes
