"""DLA-Up: iterative deep aggregation for upsampling (§4.2): ``IDAUp`` stages chained by ``DLAUp``."""
from typing import List, Sequence, Union

import torch
import torch.nn as nn

from .layers import AggregationNode, NormLayer, bilinear_upsample_init, crop_to, get_norm_layer

__all__ = ['IDAUp', 'DLAUp', 'NODE_TYPES']

NODE_TYPES = ('conv', 'dcn')


def _check_node_type(node_type: str) -> bool:
    if node_type not in NODE_TYPES:
        raise ValueError(f"node_type: unknown aggregation node {node_type!r}; allowed: {list(NODE_TYPES)}")
    return node_type == 'dcn'


class IDAUp(nn.Module):
    """One IDA upsampling stage: project, upsample (learned, bilinear-initialised), aggregate iteratively.

    Input ``i`` is projected to ``out_channels`` (1x1 conv + norm + ReLU, skipped when widths match) and upsampled
    by ``up_factors[i]`` with a depthwise transposed conv initialised to bilinear interpolation. Then
    ``x_1 = N(x_0, u_1)``, ``x_2 = N(x_1, u_2)``, ... with 3x3 aggregation nodes N. ``forward`` returns
    ``[x_1, ..., x_{n-1}]``, all at the resolution of input 0 (the last one aggregates everything).
    ``dcn_impl`` ('auto', 'native', 'torchvision') picks the kernel of 'dcn' nodes; the state_dict is the same.
    """

    def __init__(self, in_channels: Sequence[int], up_factors: Sequence[int], out_channels: int,
                 node_kernel: int = 3, node_type: str = 'conv', norm_layer: Union[str, NormLayer, None] = None,
                 dcn_impl: str = 'auto'):
        super().__init__()
        if len(in_channels) != len(up_factors) or len(in_channels) < 2:
            raise ValueError('in_channels/up_factors: need the same number (>= 2) of entries, '
                             f'got {list(in_channels)} and {list(up_factors)}')
        deformable = _check_node_type(node_type)
        norm = get_norm_layer(norm_layer)
        self.in_channels, self.up_factors, self.out_channels = list(in_channels), list(up_factors), out_channels
        self.proj = nn.ModuleList()
        self.up = nn.ModuleList()
        for c, f in zip(in_channels, up_factors):
            if c == out_channels:
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
        self.nodes = nn.ModuleList([
            AggregationNode(2 * out_channels, out_channels, node_kernel, norm_layer=norm, deformable=deformable,
                            dcn_impl=dcn_impl)
            for _ in range(len(in_channels) - 1)])

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        ups: List[torch.Tensor] = []
        for i, (proj, up) in enumerate(zip(self.proj, self.up)):
            ups.append(crop_to(up(proj(inputs[i])), inputs[0]))
        x = ups[0]
        outs: List[torch.Tensor] = []
        for i, node in enumerate(self.nodes):
            x = node([x, ups[i + 1]])
            outs.append(x)
        return outs


class DLAUp(nn.Module):
    """The iterative up-path over levels (ucbdrive's DLA-Up): coarse levels are merged into ever finer ones.

    Stage ``k`` runs an :class:`IDAUp` over level ``j = n-2-k`` and everything coarser (already merged to level
    ``j+1``), producing outputs at level ``j``'s resolution and width. ``forward`` returns one map per input level,
    finest first: entry ``j`` aggregates levels ``j..n-1`` at the stride and width of level ``j`` (the coarsest
    entry is the input itself). Entry 0 is the DLA-Up output used for segmentation.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], node_type: str = 'conv',
                 norm_layer: Union[str, NormLayer, None] = None, dcn_impl: str = 'auto'):
        super().__init__()
        n = len(in_channels)
        if n < 2 or len(strides) != n:
            raise ValueError(f'in_channels/strides: need the same number (>= 2) of levels, got {list(in_channels)} '
                             f'and {list(strides)}')
        if any(s2 % s1 for s1, s2 in zip(strides, strides[1:])):
            raise ValueError(f'strides: each stride must divide the next, got {list(strides)}')
        self.in_channels, self.strides = list(in_channels), list(strides)
        chans, scales = list(in_channels), list(strides)
        self.idas = nn.ModuleList()
        for j in range(n - 2, -1, -1):
            self.idas.append(IDAUp(chans[j:], [s // scales[j] for s in scales[j:]], in_channels[j],
                                   node_type=node_type, norm_layer=norm_layer, dcn_impl=dcn_impl))
            chans[j + 1:] = [in_channels[j]] * (n - j - 1)
            scales[j + 1:] = [scales[j]] * (n - j - 1)

    def forward(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        n = len(self.in_channels)
        layers = list(features)
        pyramid = [features[-1]]
        for k, ida in enumerate(self.idas):
            j = n - 2 - k
            merged = ida(layers[j:])
            layers = layers[: j + 1] + merged
            pyramid.insert(0, merged[-1])
        return pyramid
