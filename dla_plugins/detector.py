"""CenterNet's ctdet detector on DLA ("Objects as Points"): :class:`DLASeg` features at stride 4 + CenterNet's task
heads, with CenterNet's decoding. Its checkpoints (``hm``/``wh``/``reg`` heads included) load by name."""
import logging
import os
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch

from .backbone import DLA
from .centernet import CenterNetHeads, ctdet_decode
from .checkpoint import CheckpointError, LoadReport
from .layers import NormLayer
from .seg import DLASeg, weights_path

__all__ = ['CenterNet', 'COCO_HEADS', 'CTDET_HEADS', 'last_conv_name', 'ctdet_heads']

COCO_HEADS = {'hm': 80, 'wh': 2, 'reg': 2}  # CenterNet's ctdet heads on COCO (opts.py: hm, wh, then reg)
CTDET_HEADS = ('hm', 'wh', 'reg')
_logger = logging.getLogger(__name__)


def last_conv_name(head: str, head_conv: int) -> str:
    """The state_dict prefix of a head's last conv (``hm.2`` with ``head_conv > 0``, else ``hm``)."""
    return f'{head}.2' if head_conv > 0 else head


_TRUNK = ('base', 'dla_up', 'ida_up', 'backbone', 'neck')  # CenterNet's and our own whole-network prefixes


def ctdet_heads(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """The :class:`CenterNet` head arguments (``heads``, ``head_conv``, ``final_kernel``) of a CenterNet-style or our
    own whole-network state_dict whose task heads (``hm.*`` or ``heads.hm.*`` ...) are exactly ctdet's (``hm``,
    ``wh``, optionally ``reg``); empty otherwise (no heads, or another task's: tracking, pose, 3-D, re-ID)."""
    heads = {k[len('heads.'):]: v for k, v in state.items() if k.startswith('heads.')}
    heads = heads or {k: v for k, v in state.items() if k.split('.', 1)[0] not in _TRUNK}
    names = {k.split('.', 1)[0] for k in heads}
    if not {'hm', 'wh'} <= names or not names <= set(CTDET_HEADS):
        return {}
    head_conv = int(heads['hm.0.weight'].shape[0]) if 'hm.2.weight' in heads else 0
    last = {n: heads[f'{last_conv_name(n, head_conv)}.weight'] for n in names}
    return dict(heads={n: int(last[n].shape[0]) for n in CTDET_HEADS if n in names}, head_conv=head_conv,
                final_kernel=int(last['hm'].shape[-1]))


class CenterNet(DLASeg):
    """DLA + DLA-Up at stride ``down_ratio`` + :class:`~dla_plugins.centernet.CenterNetHeads`.

    The defaults are CenterNet's ``--arch dla_34`` ctdet network (``pose_dla_dcn``: deformable DLA-Up of the
    'centernet' flavour); ``flavor='paper', node_type='conv'`` is its ``dlav0_34``. State_dict keys: ``backbone.*``,
    ``neck.*``, ``heads.<name>.*``. ``forward`` returns the raw head outputs (``hm`` as logits); :meth:`detect` decodes.

    Args:
        backbone: A variant name or a headless :class:`DLA`.
        heads: Output name -> channels (default :data:`COCO_HEADS`); ``hm`` is the class heatmap.
        head_conv: Hidden channels of each head (0: one conv per head). final_kernel: kernel of each head's last conv.
        checkpoint_path / pretrained: A checkpoint of any recognised layout or a registry name
            (``'centernet/ctdet_coco_dla_2x'``): a CenterNet-family file loads whole, heads included; a classifier or
            backbone file loads into the backbone (heads and DLA-Up stay fresh).
        reinit_hm: Keep this model's fresh heatmap head (prior -2.19) when the file's has another number of classes
            (fine-tuning to another dataset); without it such a file is an error naming both class counts.
        Other arguments: as :class:`DLASeg` (``num_classes`` is 0: the heads replace the classifier).
    """

    def __init__(self, backbone: Union[str, DLA] = 'dla34', heads: Optional[Mapping[str, int]] = None,
                 head_conv: int = 256, final_kernel: int = 1, down_ratio: int = 4, output_stride: int = 32,
                 node_type: str = 'dcn', norm_layer: Union[str, NormLayer, None] = None, flavor: str = 'centernet',
                 bias: Optional[bool] = None, node_kernel: int = 3, final_ida: Optional[bool] = None,
                 dcn_impl: str = 'auto', checkpoint_path: Optional[str] = None, pretrained: Union[bool, str] = False,
                 reinit_hm: bool = False):
        super().__init__(backbone, num_classes=0, down_ratio=down_ratio, output_stride=output_stride,
                         node_type=node_type, norm_layer=norm_layer, flavor=flavor, bias=bias, node_kernel=node_kernel,
                         final_ida=final_ida, dcn_impl=dcn_impl)
        self.heads = CenterNetHeads(self.num_features, dict(COCO_HEADS if heads is None else heads), head_conv,
                                    final_kernel)
        if 'hm' not in self.heads.head_names:
            raise ValueError(f"heads: {dict(heads or {})!r}; allowed: a mapping with an 'hm' (class heatmap) head")
        self.head_conv = head_conv
        checkpoint_path = weights_path(backbone, pretrained, checkpoint_path)
        if checkpoint_path is not None:
            self.load_weights(checkpoint_path, reinit_hm=reinit_hm)

    @property
    def num_heatmap_classes(self) -> int:
        return self.heads.channels['hm']

    def load_weights(self, path: Union[str, os.PathLike, Mapping[str, torch.Tensor]],  # type: ignore[override]
                     reinit_hm: bool = False) -> LoadReport:
        """Load ``path`` (any recognised layout, a ``dlap://`` name, or a state_dict): whole when it holds a DLA-Up
        (heads by name; ``reinit_hm``: see the class), else into the backbone. Returns the report."""
        last = f'heads.{last_conv_name("hm", self.head_conv)}'
        report = super().load_weights(path, classifier='if_mismatched' if reinit_hm else 'keep', classifier_name=last)
        if report.dropped_classifier:
            _logger.info('re-initialised the heatmap head (%d classes, bias prior -2.19); not loaded: %s',
                         self.num_heatmap_classes, ', '.join(report.dropped_classifier))
        return report

    def _check_whole(self, state: Mapping[str, torch.Tensor], classifier: str) -> None:
        """A heatmap head of another class count, not to be re-initialised: an error naming both counts."""
        last = last_conv_name('hm', self.head_conv)
        theirs = state.get(f'{last}.weight', state.get(f'heads.{last}.weight'))
        ours = self.num_heatmap_classes
        if classifier == 'keep' and theirs is not None and theirs.shape[0] != ours:
            raise CheckpointError(
                f'heads: the checkpoint\'s hm head has {theirs.shape[0]} classes, the model\'s {ours}; build the '
                f'model with heads={{"hm": {theirs.shape[0]}, ...}} or pass reinit_hm=True to keep a fresh '
                f'{ours}-class heatmap head')

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        return self.heads(self.forward_features(x))

    def detect(self, x: torch.Tensor, K: int = 100) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``K`` best detections per image as CenterNet's ``ctdet_decode``: boxes (B, K, 4) x1, y1, x2, y2 in
        input pixels, scores (B, K) best first, classes (B, K) int64."""
        out = self(x)
        boxes, scores, classes = ctdet_decode(out['hm'].sigmoid(), out['wh'], out.get('reg'), K=K)
        return boxes * self.down_ratio, scores, classes
