"""The original SMOKE layout (lzccccc/SMOKE ``smoke/modeling/backbone/dla.py``, not mmdetection3d's port).

Keys: ``backbone.body.base.*`` (DLABase: ucbdrive's tree with mmcv-like norm names ``norm1``/``norm2`` and
``root.norm``, GroupNorm by default), ``backbone.body.dla_up.ida_<i>.`` and ``backbone.body.ida_up.`` holding
``proj_<k>``/``node_<k>`` = ``DeformConv``: ``deform_conv`` (DCNv2's ``DCN`` with ``weight``, ``bias`` and
``conv_offset_mask``) then ``norm``, and ``up_<k>``; then ``heads.predictor.*``. The graph is CenterNet's
``pose_dla_dcn`` (sum nodes, final IDA-Up), so it loads into ``DLASeg(flavor='centernet', node_type='dcn',
norm_layer='gn')``.
"""
from typing import Tuple

from .mmdet3d import rename_backbone_key
from .rules import LayoutRule

__all__ = ['SMOKE_BASE_PREFIX', 'SMOKE_NECK_PARTS', 'RULES']

# SMOKE's own module names (backbone.py: ``nn.Sequential(OrderedDict([("body", DLA(cfg))]))`` under ``backbone``),
# not mmseg's host prefix of the same spelling (which stays in mmseg_ext/layout.py).
SMOKE_BASE_PREFIX = 'backbone.body.base.'

SMOKE_NECK_PARTS: Tuple[Tuple[str, str], ...] = (
    (r'deform_conv\.(weight|bias)', r'conv:\1'),
    (r'deform_conv\.conv_offset_mask\.(weight|bias)', r'conv:offset_mask.\1'),
    (r'norm\.(.+)', r'norm:\1'),
)

RULES = (
    LayoutRule('smoke', 'SMOKE (lzccccc/SMOKE) DLA-34-DCN: DLABase + DLAUp + IDAUp in its backbone body',
               lambda ev: ev.backbone_prefix == SMOKE_BASE_PREFIX, neck_parts=SMOKE_NECK_PARTS,
               rename_backbone=rename_backbone_key, signature=r'^(backbone\.body\.|heads\.predictor\.)'),
)
