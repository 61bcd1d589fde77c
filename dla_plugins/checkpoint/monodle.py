"""monodle (xinzhuma/monodle ``lib/models/centernet3d.py``): ucbdrive's DLA under ``backbone.`` (with its ImageNet
``fc``), its own DLA-Up under ``neck.`` (``lib/backbones/dlaup.py``), heads ``heatmap``, ``offset_2d``, ... at the top.

Its DLA-Up has no equivalent in :class:`~dla_plugins.DLAUp`: every IDA input after the first is projected by a 3x3
conv (no bias) + BN + ReLU even when the widths already agree (``proj_<k>.conv``/``proj_<k>.bn``), nodes concatenate
(3x3 conv from 2C to C, ``node_<k>.conv``/``node_<k>.bn``) and there is no final IDA-Up. So the backbone loads and the
neck is skipped and listed (``neck_loads=False``).
"""
from .rules import Evidence, LayoutRule

__all__ = ['RULES']


def _monodle_neck(ev: Evidence) -> bool:
    return (ev.backbone_prefix == 'backbone.' and ev.neck_prefix == 'neck.'
            and ev.neck_has(r'^ida_\d+\.proj_\d+\.conv\.weight$') and ev.neck_has(r'^ida_\d+\.node_\d+\.bn\.'))


RULES = (
    LayoutRule('monodle', 'monodle CenterNet3D: ucbdrive DLA + its own DLAUp (3x3 projections, concatenating nodes)',
               _monodle_neck, neck_loads=False, signature=r'^(backbone|neck|heatmap|offset_2d|size_2d|depth)\.'),
)
