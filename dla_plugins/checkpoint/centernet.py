"""CenterNet-family layouts: CenterNet ``pose_dla_dcn`` (and ``dlav0``, see ``ucbdrive``), FairMOT
``pose_dla_dcn``/``pose_dla_conv``, CenterTrack.

Keys: ``base.*`` (the DLA, with ucbdrive's unused ``project`` layers and ImageNet ``fc``), ``dla_up.ida_<i>.`` and
``ida_up.`` (the final IDA-Up) holding ``proj_<k>``/``node_<k>`` (``DeformConv``: ``conv`` = DCNv2's ``DCN`` with
``weight``, ``bias`` and ``conv_offset_mask``, or a plain bias-free conv in ``pose_dla_conv``; ``actf.0`` the norm)
and ``up_<k>``, then task heads (``hm``, ``wh``, ``reg``, ``id``, ``tracking``, ...). CenterTrack adds
``base.pre_img_layer``/``base.pre_hm_layer`` (extra input convs for the previous frame and heatmap).
DCNv2's ``conv_offset_mask`` output is chunked (o1, o2, mask) and ``cat(o1, o2)`` is the offset, exactly as in our
:class:`~dla_plugins.ModulatedDeformConv2d`, so the weights carry over unchanged.
"""
import re
from typing import Mapping, Tuple

from .rules import Evidence, LayoutRule
from .ucbdrive import PAPER_NECK_PARTS

__all__ = ['CENTERNET_NECK_PARTS', 'EXTRA_INPUT_CONV', 'family_of_heads', 'RULES']

CENTERNET_NECK_PARTS: Tuple[Tuple[str, str], ...] = (
    (r'conv\.(weight|bias)', r'conv:\1'),
    (r'conv\.conv_offset_mask\.(weight|bias)', r'conv:offset_mask.\1'),
    (r'actf\.0\.(.+)', r'norm:\1'),
)
EXTRA_INPUT_CONV = re.compile(r'^(pre_img_layer|pre_hm_layer)\.')


def family_of_heads(state: Mapping[str, object], base_prefix: str, deformable: bool) -> str:
    """Which CenterNet-family project saved this file, from its heads: FairMOT has a re-ID ``id`` head, CenterTrack a
    ``tracking`` head or extra input convs; otherwise CenterNet."""
    tops = {k.split('.', 1)[0] for k in state}
    if 'id' in tops:
        return 'fairmot' if deformable else 'fairmot-conv'
    if 'tracking' in tops or any(EXTRA_INPUT_CONV.match(k[len(base_prefix):]) for k in state
                                 if k.startswith(base_prefix)):
        return 'centertrack'
    return 'centernet' if deformable else 'centernet-conv'


def _centernet_style(ev: Evidence) -> bool:
    return ev.neck_has(r'(proj|node)_\d+\.actf\.')


def _deformable(ev: Evidence) -> bool:
    return ev.neck_has('conv_offset_mask')


def _tracking(ev: Evidence) -> bool:
    return 'tracking' in ev.tops or ev.backbone_has(EXTRA_INPUT_CONV.pattern)


def _rule(family: str, description: str, matches, signature=None) -> LayoutRule:
    return LayoutRule(family, description, lambda ev: _centernet_style(ev) and matches(ev),
                      neck_parts=CENTERNET_NECK_PARTS, extra_inputs=EXTRA_INPUT_CONV, signature=signature)


RULES = (
    _rule('fairmot', 'FairMOT pose_dla_dcn', lambda ev: 'id' in ev.tops and _deformable(ev)),
    _rule('fairmot-conv', 'FairMOT pose_dla_conv', lambda ev: 'id' in ev.tops),
    _rule('centertrack', 'CenterTrack pose_dla_dcn', _tracking),
    _rule('centernet', 'CenterNet pose_dla_dcn', _deformable, signature=r'^(base|dla_up|ida_up|hm|wh|reg)\.'),
    _rule('centernet-conv', 'CenterNet-style pose_dla_conv (no DCN)', lambda ev: True),
    LayoutRule('centernet-dlav0', 'CenterNet dlav0 (paper DLA-Up)', lambda ev: ev.neck_prefix is not None,
               neck_parts=PAPER_NECK_PARTS, flavor='paper'),
)
"""Ordered: a re-ID head makes FairMOT, tracking inputs CenterTrack, else CenterNet; ``dlav0`` (paper DLA-Up, after
ucbdrive's DLASeg, which has its classifier) takes any other DLA-Up."""
