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

__all__ = ['CENTERNET_NECK_PARTS', 'EXTRA_INPUT_CONV', 'family_of_heads']

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
