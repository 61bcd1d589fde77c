"""DLA-Up: iterative deep aggregation for upsampling (§4.2): ``IDAUp`` stages chained by ``DLAUp``.

Two flavours share one implementation and differ only by data (module choices and how a node merges its inputs):

- ``'paper'``: ucbdrive's ``dla_up.py`` (and CenterNet's ``dlav0``): 1x1 projections only where widths differ,
  nodes aggregate ``concat(x, u)``.
- ``'centernet'``: CenterNet's ``pose_dla_dcn`` (also FairMOT, CenterTrack, mmdetection3d's ``DLANeck``,
  CenterNet2's ``DLASeg``): every input after the first gets a 3x3 projection (conv -> norm -> ReLU) whatever its
  width, nodes aggregate the sum ``x + u`` with a 3x3 conv -> norm -> ReLU, and a final IDA-Up stage merges the
  DLA-Up outputs (all but the coarsest) back to the finest stride.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn

from .layers import AggregationNode, NormLayer, bilinear_upsample_init, conv_layer, crop_to, get_norm_layer

__all__ = ['IDAUp', 'DLAUp', 'NODE_TYPES', 'FLAVORS']

NODE_TYPES = ('conv', 'dcn')
FLAVORS = ('paper', 'centernet')


def _check_node_type(node_type: str) -> bool:
    if node_type not in NODE_TYPES:
        raise ValueError(f"node_type: unknown aggregation node {node_type!r}; allowed: {list(NODE_TYPES)}")
    return node_type == 'dcn'


def _check_flavor(flavor: str) -> str:
    if flavor not in FLAVORS:
        raise ValueError(f"flavor: unknown DLA-Up flavour {flavor!r}; allowed: {list(FLAVORS)}")
    return flavor


class IDAUp(nn.Module):
    """One IDA upsampling stage: project, upsample (learned, bilinear-initialised), aggregate iteratively.

    Input ``i`` is projected to ``out_channels`` and upsampled by ``up_factors[i]`` with a depthwise transposed conv
    initialised to bilinear interpolation, giving ``u_i``. Then ``x_1 = N(x_0, u_1)``, ``x_2 = N(x_1, u_2)``, ...
    with 3x3 aggregation nodes N. ``forward`` returns ``[x_1, ..., x_{n-1}]``, all at the resolution of input 0
    (the last one aggregates everything).

    ``flavor='paper'``: projections are 1x1 conv + norm + ReLU, skipped when widths match; ``N`` convolves
    ``concat(x, u)``. ``flavor='centernet'``: input 0 is used as is (it must be ``out_channels`` wide), every other
    input gets a 3x3 conv + norm + ReLU projection; ``N`` convolves ``x + u``. ``node_type='dcn'`` makes the 3x3
    convs (nodes, and centernet projections) modulated deformable. ``bias`` adds a conv bias to those 3x3 convs
    (None: True for centernet+dcn as in CenterNet/mmdetection3d, else False as in FairMOT's ``pose_dla_conv``).
    ``dcn_impl`` ('auto', 'native', 'torchvision') picks the kernel of deformable convs; the state_dict is the same.
    """

    def __init__(self, in_channels: Sequence[int], up_factors: Sequence[int], out_channels: int,
                 node_kernel: int = 3, node_type: str = 'conv', norm_layer: Union[str, NormLayer, None] = None,
                 flavor: str = 'paper', bias: Optional[bool] = None, dcn_impl: str = 'auto'):
        super().__init__()
        if len(in_channels) != len(up_factors) or len(in_channels) < 2:
            raise ValueError('in_channels/up_factors: need the same number (>= 2) of entries, '
                             f'got {list(in_channels)} and {list(up_factors)}')
        deformable = _check_node_type(node_type)
        self.flavor = _check_flavor(flavor)
        centernet = flavor == 'centernet'
        if centernet and in_channels[0] != out_channels:
            raise ValueError(f"in_channels: flavor='centernet' uses input 0 unprojected, so it must have "
                             f"out_channels={out_channels} channels, got {in_channels[0]}")
        if bias is None:
            bias = centernet and deformable
        norm = get_norm_layer(norm_layer)
        self.in_channels, self.up_factors, self.out_channels = list(in_channels), list(up_factors), out_channels
        self.proj = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, (c, f) in enumerate(zip(in_channels, up_factors)):
            if centernet and i > 0:
                self.proj.append(nn.Sequential(conv_layer(c, out_channels, node_kernel, deformable, bias, dcn_impl),
                                               norm(out_channels), nn.ReLU(inplace=True)))
            elif c == out_channels:
                self.proj.append(nn.Identity())
            else:
                self.proj.append(nn.Sequential(nn.Conv2d(c, out_channels, 1, bias=False), norm(out_channels),
                                               nn.ReLU(inplace=True)))
            if f == 1:
                self.up.append(nn.Identity())
            else:
                up = nn.ConvTranspose2d(out_channels, out_channels, 2 * f, stride=f, padding=f // 2,
                                        groups=out_channels, bias=False)
                bilinear_upsample_init(up)
                self.up.append(up)
        node_in = out_channels if centernet else 2 * out_channels
        self.nodes = nn.ModuleList([
            AggregationNode(node_in, out_channels, node_kernel, norm_layer=norm, deformable=deformable,
                            bias=bias, dcn_impl=dcn_impl)
            for _ in range(len(in_channels) - 1)])
        self.sum_nodes = centernet

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        ups: List[torch.Tensor] = []
        for i, (proj, up) in enumerate(zip(self.proj, self.up)):
            ups.append(crop_to(up(proj(inputs[i])), inputs[0]))
        x = ups[0]
        outs: List[torch.Tensor] = []
        for i, node in enumerate(self.nodes):
            x = node([x + ups[i + 1]]) if self.sum_nodes else node([x, ups[i + 1]])
            outs.append(x)
        return outs


class DLAUp(nn.Module):
    """The iterative up-path over levels (DLA-Up): coarse levels are merged into ever finer ones.

    Stage ``k`` runs an :class:`IDAUp` over level ``j = n-2-k`` and everything coarser (already merged to level
    ``j+1``), producing outputs at level ``j``'s resolution and width. ``forward`` returns one map per input level,
    finest first: entry ``j`` aggregates levels ``j..n-1`` at the stride and width of level ``j`` (the coarsest
    entry is the input itself). Entry 0 is the output the task head uses: with ``flavor='centernet'`` (and >= 3
    levels) it is the final IDA-Up stage (``ida_final``) over entries ``0..n-2``, as CenterNet feeds its heads.

    Args:
        in_channels: Widths of the input levels, finest first.
        strides: Their strides (each divides the next).
        node_type: 'conv' or 'dcn' (modulated deformable 3x3 convs).
        norm_layer: Norm of projections and nodes ('bn', 'gn', ... or a callable).
        flavor: 'paper' (ucbdrive DLA-Up) or 'centernet' (CenterNet's DLA-Up + final IDA-Up), see :class:`IDAUp`.
        bias: Conv bias of the 3x3 convs (None: the flavour's reference default, see :class:`IDAUp`).
        node_kernel: Kernel of the nodes (and of centernet projections): 3, or 1 as in CenterNet2's ``DLAUP``.
        final_ida: Add the final IDA-Up stage (None: for flavor='centernet'; CenterNet2's ``DLAUP`` has none).
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], node_type: str = 'conv',
                 norm_layer: Union[str, NormLayer, None] = None, flavor: str = 'paper', bias: Optional[bool] = None,
                 node_kernel: int = 3, final_ida: Optional[bool] = None, dcn_impl: str = 'auto'):
        super().__init__()
        n = len(in_channels)
        if n < 2 or len(strides) != n:
            raise ValueError(f'in_channels/strides: need the same number (>= 2) of levels, got {list(in_channels)} '
                             f'and {list(strides)}')
        if any(s2 % s1 for s1, s2 in zip(strides, strides[1:])):
            raise ValueError(f'strides: each stride must divide the next, got {list(strides)}')
        self.in_channels, self.strides, self.flavor = list(in_channels), list(strides), _check_flavor(flavor)
        common = dict(node_type=node_type, norm_layer=norm_layer, flavor=flavor, bias=bias, node_kernel=node_kernel,
                      dcn_impl=dcn_impl)
        chans, scales = list(in_channels), list(strides)
        self.idas = nn.ModuleList()
        for j in range(n - 2, -1, -1):
            self.idas.append(IDAUp(chans[j:], [s // scales[j] for s in scales[j:]], in_channels[j], **common))
            chans[j + 1:] = [in_channels[j]] * (n - j - 1)
            scales[j + 1:] = [scales[j]] * (n - j - 1)
        self.ida_final: Optional[IDAUp] = None
        if (flavor == 'centernet' if final_ida is None else final_ida) and n >= 3:
            self.ida_final = IDAUp(in_channels[: n - 1], [s // strides[0] for s in strides[: n - 1]], in_channels[0],
                                   **common)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        n = len(self.in_channels)
        layers = list(features)
        pyramid = [features[-1]]
        for k, ida in enumerate(self.idas):
            j = n - 2 - k
            merged = ida(layers[j:])
            layers = layers[: j + 1] + merged
            pyramid.insert(0, merged[-1])
        if self.ida_final is not None:
            pyramid[0] = self.ida_final(pyramid[: n - 1])[-1]
        return pyramid
