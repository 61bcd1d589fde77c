"""The segmentation/dense-prediction network of §4.2: a (dilated) DLA, DLA-Up back to a fine stride, a classifier."""
import logging
import os
from typing import List, Mapping, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbone import DLA
from .checkpoint import detect_layout, load_checkpoint, read_state_dict
from .checkpoint.load import LoadReport, note_weights
from .dla_up import DLAUp
from .factory import create_dla
from .files import weights_name
from .layers import NormLayer
from .variants import resolve_variant
from .weights import pretrained_path

__all__ = ['DLASeg', 'DOWN_RATIOS', 'weights_path']

DOWN_RATIOS = (2, 4, 8, 16)
_logger = logging.getLogger(__name__)


def weights_path(backbone: Union[str, DLA], pretrained: Union[bool, str, None], checkpoint_path: Optional[str]
                 ) -> Optional[str]:
    """What a network on ``backbone`` loads: ``checkpoint_path``, or the registry file ``pretrained`` names for the
    backbone's variant (see :func:`~dla_plugins.weights.pretrained_path`)."""
    if pretrained is False or pretrained is None:
        return checkpoint_path
    variant = resolve_variant(backbone).name if isinstance(backbone, str) else getattr(backbone, 'variant', '')
    return pretrained_path(variant, pretrained, checkpoint_path)


class DLASeg(nn.Module):
    """DLA (optionally dilated) + DLA-Up back to stride ``down_ratio`` + an optional 1x1 classifier.

    ``flavor='paper'`` is ucbdrive's DLASeg (``dla_up.py``); ``flavor='centernet'`` is the network CenterNet,
    CenterTrack, FairMOT, mmdetection3d (SMOKE/MonoFlex) and CenterNet2 put under their task heads, and
    :meth:`forward_features` returns exactly the map they feed those heads.

    Args:
        backbone: A variant name or a headless :class:`DLA` (``num_classes=0``).
        num_classes: Segmentation classes; 0 builds no classifier (``forward`` then returns the features).
        down_ratio: Stride of the DLA-Up output: 2, 4, 8 or 16 (logits are resized to the input).
        output_stride: Backbone output stride when ``backbone`` is a name (8 as in the paper, 16 or 32).
        node_type: 'conv' or 'dcn' (modulated deformable) 3x3 convs in DLA-Up.
        norm_layer: Norm for the backbone (when built here) and DLA-Up.
        flavor: 'paper' or 'centernet' (see :class:`~dla_plugins.DLAUp`).
        bias: Conv bias of the DLA-Up 3x3 convs (None: the flavour's reference default).
        checkpoint_path: A checkpoint of any recognised layout (see :func:`~dla_plugins.load_checkpoint`): one with a
            DLA-Up (CenterNet, mmdetection3d, ucbdrive DLASeg, ...) loads into the whole network (build it with the
            checkpoint's ``model_kwargs``; a classifier of another size is left freshly initialised), a classifier
            or backbone checkpoint into the backbone (when built here).
        node_kernel: DLA-Up node kernel (3; 1 for CenterNet2's ``DLAUP``).
        final_ida: The final IDA-Up stage (None: with flavor='centernet').
        dcn_impl: Kernel of deformable convs: 'auto', 'native' (pure PyTorch) or 'torchvision' (same state_dict).
        pretrained: A registry file by name, fetched on first use and loaded as ``checkpoint_path`` is: a full name
            (``'centernet/ctdet_coco_dla_2x'``; ``dla_plugins.create_from_weights(name)`` builds its own
            network) or a tag of the backbone's variant (``True``/``'in1k'``: ImageNet, into the backbone).
    """

    def __init__(self, backbone: Union[str, DLA] = 'dla34', num_classes: int = 19, down_ratio: int = 4,
                 output_stride: int = 8, node_type: str = 'conv', norm_layer: Union[str, NormLayer, None] = None,
                 flavor: str = 'paper', checkpoint_path: Optional[str] = None, bias: Optional[bool] = None,
                 node_kernel: int = 3, final_ida: Optional[bool] = None, dcn_impl: str = 'auto',
                 pretrained: Union[bool, str] = False):
        super().__init__()
        if down_ratio not in DOWN_RATIOS:
            raise ValueError(f'down_ratio: must be one of {list(DOWN_RATIOS)}, got {down_ratio!r}')
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes: must be an integer >= 0, got {num_classes!r}')
        checkpoint_path = weights_path(backbone, pretrained, checkpoint_path)
        if isinstance(backbone, str):
            backbone = create_dla(backbone, num_classes=0, output_stride=output_stride, norm_layer=norm_layer)
        if not isinstance(backbone, DLA) or backbone.num_classes != 0:
            raise ValueError('backbone: must be a variant name or a DLA built with num_classes=0')
        self.backbone = backbone
        self.first_level = down_ratio.bit_length() - 1
        self.down_ratio = down_ratio
        info = backbone.feature_info[self.first_level:]
        self.neck = DLAUp([f['num_chs'] for f in info], [f['reduction'] for f in info], node_type=node_type,
                          norm_layer=norm_layer, flavor=flavor, bias=bias, node_kernel=node_kernel, final_ida=final_ida,
                          dcn_impl=dcn_impl)
        self.num_features = info[0]['num_chs']
        self.classifier = nn.Conv2d(self.num_features, num_classes, 1) if num_classes else nn.Identity()
        self.num_classes = num_classes
        if checkpoint_path is not None:
            self.load_weights(checkpoint_path)

    def load_weights(self, path: Union[str, os.PathLike, Mapping[str, torch.Tensor]], classifier: str = 'if_mismatched',
                     classifier_name: Optional[str] = None) -> LoadReport:
        """Load ``path`` (any recognised layout, a ``dlap://`` name, or a state_dict): whole when it holds a DLA-Up,
        with ``classifier``/``classifier_name`` as :func:`~dla_plugins.load_checkpoint` takes them (default: another
        classifier size stays fresh, for fine-tuning), else into the backbone. Returns the report."""
        state = path if isinstance(path, Mapping) else read_state_dict(path)
        whole = detect_layout(state).whole_network
        if whole:
            self._check_whole(state, classifier)
        into = self if whole else self.backbone
        report = load_checkpoint(into, state, classifier=classifier if whole else 'drop',
                                 classifier_name=classifier_name if whole else None)
        name = None if isinstance(path, Mapping) else weights_name(path)
        if name is not None:
            _logger.info('%s', note_weights(report, name, into))
        return report

    def _check_whole(self, state: Mapping[str, torch.Tensor], classifier: str) -> None:
        """A subclass's own checks of a whole-network file before it loads (none here)."""

    def forward_pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        """DLA-Up outputs, finest first (entry 0 is :meth:`forward_features`)."""
        levels = self.backbone.forward_intermediates(x, intermediates_only=True)
        return self.neck(levels[self.first_level:])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final aggregated map at stride ``down_ratio``, before any classifier."""
        return self.forward_pyramid(x)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.forward_features(x)
        if self.num_classes == 0:
            return feats
        return F.interpolate(self.classifier(feats), size=x.shape[-2:], mode='bilinear', align_corners=False)
