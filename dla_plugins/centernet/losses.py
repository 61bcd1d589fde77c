"""CenterNet's ctdet training losses: the penalty-reduced focal loss on the heatmap (CornerNet's), the L1 loss of
size and offset read at the object centres, and their weighted sum."""
from typing import Dict

import torch
import torch.nn.functional as F

from .decode import gather_at

_OUTPUTS = ('hm', 'wh', 'reg')
_TARGETS = ('hm', 'wh', 'reg', 'ind', 'reg_mask')


def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """sigmoid clamped to [1e-4, 1 - 1e-4] (keeps the focal loss's logs finite); ``x`` is not modified."""
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)


def focal_loss(pred: torch.Tensor, gt: torch.Tensor, alpha: float = 2, beta: float = 4) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss: ``pred`` probabilities, ``gt`` Gaussian heatmaps (1 at centres).

    Summed over all pixels and divided by the number of centres (gt == 1); with no centre, the negative term alone.
    """
    pos = gt.eq(1).float()
    neg = gt.lt(1).float()
    neg_weights = torch.pow(1 - gt, beta)
    pos_loss = (torch.log(pred) * torch.pow(1 - pred, alpha) * pos).sum()
    neg_loss = (torch.log(1 - pred) * torch.pow(pred, alpha) * neg_weights * neg).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def reg_l1_loss(output: torch.Tensor, mask: torch.Tensor, ind: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between ``output`` (B, D, H, W) read at ``ind`` (B, M) and ``target`` (B, M, D) where ``mask`` (B, M) is
    set, summed and divided by (number of masked values + 1e-4)."""
    pred = gather_at(output, ind)
    m = mask.unsqueeze(2).expand_as(pred).float()
    return F.l1_loss(pred * m, target * m, reduction='sum') / (m.sum() + 1e-4)


def ctdet_loss(outputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor], hm_weight: float = 1.0,
               wh_weight: float = 0.1, off_weight: float = 1.0) -> Dict[str, torch.Tensor]:
    """CenterNet's ctdet loss of raw head outputs (``hm`` logits) against batched :func:`ctdet_targets`.

    Returns ``hm_loss`` (focal loss on the clamped sigmoid), ``wh_loss`` and ``off_loss`` (:func:`reg_l1_loss`) and
    ``loss = hm_weight * hm_loss + wh_weight * wh_loss + off_weight * off_loss``.
    """
    for arg, given, needed in (('outputs', outputs, _OUTPUTS), ('targets', targets, _TARGETS)):
        missing = [k for k in needed if k not in given]
        if missing:
            raise ValueError(f'{arg}: missing {missing}; allowed: a dict with {list(needed)}')
    mask, ind = targets['reg_mask'], targets['ind']
    hm_loss = focal_loss(clamped_sigmoid(outputs['hm']), targets['hm'])
    wh_loss = reg_l1_loss(outputs['wh'], mask, ind, targets['wh'])
    off_loss = reg_l1_loss(outputs['reg'], mask, ind, targets['reg'])
    loss = hm_weight * hm_loss + wh_weight * wh_loss + off_weight * off_loss
    return {'loss': loss, 'hm_loss': hm_loss, 'wh_loss': wh_loss, 'off_loss': off_loss}
