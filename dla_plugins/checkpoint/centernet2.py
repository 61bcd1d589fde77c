"""CenterNet2 (detectron2) layouts.

- ``build_dla_backbone`` (its DLASeg): ``backbone.base.*`` (DLA), ``backbone.dla_up.ida_<i>.`` and
  ``backbone.ida_up.`` like CenterNet's, but each ``_DeformConv`` keeps detectron2's ``ModulatedDeformConv`` in
  ``conv`` (``weight``, ``bias``) and its offset/mask conv as a sibling ``offset`` (chunked like DCNv2's); norm
  ``actf.0``.
- ``build_dlaup_backbone`` (dlafpn.py's DLAUP): the DLA under ``backbone.bottom_up.``, IDAs under
  ``backbone.ida_<i>`` with 1x1 conv nodes (``conv.0``, ``conv.1``) and no final IDA-Up.
- DLA-FPN builds: the DLA under ``backbone.bottom_up.``; BiFPN builds: under ``backbone.bottom_up.backbone.``.
Everything else (FPN/BiFPN layers, ``proposal_generator``, ``roi_heads``) is not part of DLA.
"""
from typing import Tuple

from .rules import LayoutRule

__all__ = ['CENTERNET2_NECK_PARTS', 'CENTERNET2_DLAUP_PARTS', 'BOTTOM_UP_PREFIXES', 'RULES']

CENTERNET2_NECK_PARTS: Tuple[Tuple[str, str], ...] = (
    (r'conv\.(weight|bias)', r'conv:\1'),
    (r'offset\.(weight|bias)', r'conv:offset_mask.\1'),
    (r'actf\.0\.(.+)', r'norm:\1'),
)
# dlafpn.py's DLAUP (build_dlaup_backbone): IDAs directly under ``backbone.ida_<i>`` (no final IDA-Up), 'conv' nodes
# and projections = Sequential(1x1 conv without bias, norm, ReLU) under ``conv``.
CENTERNET2_DLAUP_PARTS: Tuple[Tuple[str, str], ...] = (
    (r'conv\.0\.weight', 'conv:weight'),
    (r'conv\.1\.(.+)', r'norm:\1'),
)
BOTTOM_UP_PREFIXES = ('backbone.bottom_up.backbone.', 'backbone.bottom_up.')


RULES = (
    LayoutRule('centernet2-bifpn', 'CenterNet2 fcos-BiFPN bottom-up (backbone.bottom_up.backbone.)',
               lambda ev: ev.neck_prefix is None and ev.backbone_prefix == 'backbone.bottom_up.backbone.'),
    LayoutRule('centernet2-fpn', 'CenterNet2 DLA-FPN/BiFPN bottom-up (backbone.bottom_up.; also omni3d Cube R-CNN)',
               lambda ev: ev.neck_prefix is None and ev.backbone_prefix == 'backbone.bottom_up.',
               signature=r'^backbone\.bottom_up\.'),
    LayoutRule('centernet2-dlaup', 'CenterNet2 build_dlaup_backbone (DLAUP, 1x1 conv nodes)',
               lambda ev: ev.neck_has(r'(proj|node)_\d+\.conv\.0\.weight'), neck_parts=CENTERNET2_DLAUP_PARTS,
               network=dict(node_kernel=1, final_ida=False)),
    LayoutRule('centernet2-dlaseg', 'CenterNet2 build_dla_backbone (DLASeg)',
               lambda ev: ev.neck_has(r'proj_\d+\.offset\.'), neck_parts=CENTERNET2_NECK_PARTS,
               signature=r'^backbone\.(base|dla_up|ida_up)\.'),
)
