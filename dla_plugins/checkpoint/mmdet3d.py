"""mmdetection3d layout (SMOKE, MonoFlex): ``DLANet`` under ``backbone.``, ``DLANeck`` under ``neck.``, heads under
``bbox_head.``.

DLANet is ucbdrive's tree with mmcv names: ``norm1``/``norm2`` in blocks and ``root.norm`` (ours: ``bn1``/``bn2``,
``root.bn``), usually GroupNorm. DLANeck is CenterNet's DLA-Up + final IDA-Up with ModuleLists ``projs``/``ups``/
``nodes`` (index ``k - 1`` for CenterNet's ``proj_<k>``) of mmcv ``ConvModule``: ``conv`` (a bias; with DCNv2 its
offsets come from ``conv.conv_offset``, chunked like DCNv2's) and the norm (``gn`` or ``bn``).
"""
import re
from typing import Tuple

from .rules import LayoutRule

__all__ = ['MMDET3D_NECK_PARTS', 'rename_backbone_key', 'RULES']

MMDET3D_NECK_PARTS: Tuple[Tuple[str, str], ...] = (
    (r'conv\.(weight|bias)', r'conv:\1'),
    (r'conv\.conv_offset\.(weight|bias)', r'conv:offset_mask.\1'),
    (r'(?:gn|bn)\.(.+)', r'norm:\1'),
)
_NORM = re.compile(r'(^|\.)(norm(\d)|root\.norm)\.')


def rename_backbone_key(key: str) -> str:
    """``...norm1.`` -> ``...bn1.``, ``root.norm.`` -> ``root.bn.`` (mmcv norm names to ours)."""
    return _NORM.sub(lambda m: f"{m.group(1)}{'root.bn' if m.group(3) is None else 'bn' + m.group(3)}.", key)


RULES = (
    LayoutRule('mmdet3d', 'mmdetection3d DLANet + DLANeck (SMOKE, MonoFlex)',
               lambda ev: ev.neck_has(r'^dla_up\.ida_\d+\.projs\.') if ev.neck_prefix is not None
               else ev.backbone_prefix == 'backbone.' and any('.norm1.' in k for k in ev.keys),
               neck_parts=MMDET3D_NECK_PARTS, neck_lists=True, rename_backbone=rename_backbone_key,
               signature=r'^(backbone|neck|bbox_head)\.'),
)
"""DLANeck's ModuleLists ``projs``; without a neck, DLANet's mmcv norm names under ``backbone.``."""
