"""The segmentation network of §4.2: a (dilated) DLA, DLA-Up back to a fine stride, and a classifier."""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import DLA
from .dla_up import DLAUp
from .layers import NormLayer

__all__ = ['DLASeg']


class DLASeg(nn.Module):
    """Segmentation network of §4.2: DLA (optionally dilated) + DLA-Up back to stride ``down_ratio`` + classifier.

    Args:
        backbone: A variant name or a headless :class:`DLA` (``num_classes=0``).
        num_classes: Segmentation classes.
        down_ratio: Stride of the DLA-Up output, 2 or 4 (the classifier's logits are then resized to the input).
        output_stride: Backbone output stride when ``backbone`` is a name (8 as in the paper, 16 or 32).
        node_type: 'conv' or 'dcn' (modulated deformable) aggregation nodes in DLA-Up.
        norm_layer: Norm for the backbone (when built here) and DLA-Up.
        checkpoint_path: Backbone weights to load (when built here).
        dcn_impl: Kernel of 'dcn' nodes: 'auto', 'native' (pure PyTorch) or 'torchvision' (same state_dict).
    """

    def __init__(self, backbone: Union[str, DLA] = 'dla34', num_classes: int = 19, down_ratio: int = 4,
                 output_stride: int = 8, node_type: str = 'conv', norm_layer: Union[str, NormLayer, None] = None,
                 checkpoint_path: Optional[str] = None, dcn_impl: str = 'auto'):
        super().__init__()
        if down_ratio not in (2, 4):
            raise ValueError(f'down_ratio: must be 2 or 4, got {down_ratio!r}')
        if isinstance(backbone, str):
            from .factory import create_dla

            backbone = create_dla(backbone, num_classes=0, output_stride=output_stride, norm_layer=norm_layer,
                                  checkpoint_path=checkpoint_path)
        if not isinstance(backbone, DLA) or backbone.num_classes != 0:
            raise ValueError('backbone: must be a variant name or a DLA built with num_classes=0')
        self.backbone = backbone
        self.first_level = down_ratio.bit_length() - 1
        info = backbone.feature_info[self.first_level:]
        self.neck = DLAUp([f['num_chs'] for f in info], [f['reduction'] for f in info], node_type=node_type,
                          norm_layer=norm_layer, dcn_impl=dcn_impl)
        self.classifier = nn.Conv2d(info[0]['num_chs'], num_classes, 1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone.forward_intermediates(x, intermediates_only=True)[self.first_level:]
        logits = self.classifier(self.neck(feats)[0])
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)
