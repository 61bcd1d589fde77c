"""``WeightedBoundaryLoss``: the class-weighted boundary losses of the DLA code (2-class) and DLA-AFA (1-channel).

(mmseg 1.2 already registers a ``BoundaryLoss``, PIDNet's; hence the name.)
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS

__all__ = ['WeightedBoundaryLoss']


@MODELS.register_module()
class WeightedBoundaryLoss(nn.Module):
    """Boundary loss with up-weighted boundary pixels; the form follows the head's output channels.

    - 2 channels (the DLA code: log-softmax + ``NLLLoss2d(weight=[1, edge_weight])``): weighted cross-entropy,
      averaged as torch does, ``sum(w_y * nll) / sum(w_y)`` over the non-ignored pixels.
    - 1 channel (DLA-AFA: ``BCEWithLogits(pos_weight=edge_weight)``): binary cross-entropy whose boundary term is
      multiplied by ``edge_weight``, averaged over the non-ignored pixels.

    Labels are 0 (no boundary), 1 (boundary) or ``ignore_index``. mmseg's ``CrossEntropyLoss`` is not used because
    with ``class_weight`` it indexes the weights with ignored labels (an IndexError in mmseg 1.2.2).

    Args:
        edge_weight: Weight of the boundary class (> 0); 10 in the DLA code and DLA-AFA.
        loss_weight: Factor on the loss.
        loss_name: Name of the loss in the log (must start with ``loss_``).
    """

    def __init__(self, edge_weight: float = 10.0, loss_weight: float = 1.0, loss_name: str = 'loss_boundary'):
        super().__init__()
        if not edge_weight > 0:
            raise ValueError(f'edge_weight: must be > 0, got {edge_weight!r}')
        if not loss_name.startswith('loss_'):
            raise ValueError(f"loss_name: must start with 'loss_' (mmengine sums those), got {loss_name!r}")
        self.edge_weight, self.loss_weight, self._loss_name = float(edge_weight), float(loss_weight), loss_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def forward(self, seg_logits: torch.Tensor, label: torch.Tensor, weight: Optional[torch.Tensor] = None,
                ignore_index: int = 255, **kwargs) -> torch.Tensor:
        """``seg_logits`` (N, 1 or 2, H, W) at the label size, ``label`` (N, H, W); ``weight`` optional per pixel."""
        channels = seg_logits.shape[1]
        if channels not in (1, 2):
            raise ValueError(f'seg_logits: WeightedBoundaryLoss takes 1 (sigmoid) or 2 (softmax) channels, '
                             f'got {channels}')
        valid = label != ignore_index
        bad = valid & (label != 0) & (label != 1)
        if bad.any():
            raise ValueError(f'label: boundary labels must be 0, 1 or ignore_index={ignore_index}, got '
                             f'{sorted(label[bad].unique().tolist())[:5]}')
        target = torch.where(valid, label, torch.zeros_like(label))
        pixel_w = torch.where(target == 1, seg_logits.new_tensor(self.edge_weight), seg_logits.new_tensor(1.0))
        if channels == 2:
            nll = F.cross_entropy(seg_logits.float(), target.long(), reduction='none')
            w = pixel_w * valid
        else:
            pos = seg_logits.new_tensor([self.edge_weight]).float()
            nll = F.binary_cross_entropy_with_logits(seg_logits[:, 0].float(), target.float(), pos_weight=pos,
                                                     reduction='none')
            w = valid.to(nll.dtype)
        if weight is not None:
            w = w * weight.reshape(w.shape).to(w.dtype)
        # an all-ignored batch contributes 0 (and a zero gradient), not 0/0
        return self.loss_weight * (nll * w).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)
