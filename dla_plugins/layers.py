"""Building blocks of DLA: norms, residual blocks (Fig. 3 of the paper) and the aggregation node (Eq. 3/4)."""
import math
from typing import Callable, Dict, List, Optional, Union

import torch
import torch.nn as nn

__all__ = [
    'NormLayer', 'FrozenBatchNorm2d', 'get_norm_layer', 'BasicBlock', 'Bottleneck', 'Res2Bottleneck',
    'AggregationNode', 'BLOCKS', 'bilinear_upsample_init', 'crop_to', 'conv_layer',
]

NormLayer = Callable[[int], nn.Module]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all buffers): the detection default.

    Its state_dict has the keys of ``nn.BatchNorm2d`` (``num_batches_tracked`` is accepted and ignored on load).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer('weight', torch.ones(num_features))
        self.register_buffer('bias', torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_var', torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + 'num_batches_tracked', None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def extra_repr(self) -> str:
        return f'{self.num_features}, eps={self.eps}'

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every BatchNorm2d/SyncBatchNorm replaced by a frozen copy (in place for children)."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                setattr(module, name, new)
        return module


def _group_norm(num_channels: int, num_groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """GroupNorm whose group count adapts to narrow layers (gcd with the channel count)."""
    return nn.GroupNorm(math.gcd(num_groups, num_channels), num_channels, eps=eps)


_NORMS: Dict[str, NormLayer] = {
    'bn': nn.BatchNorm2d,
    'syncbn': nn.SyncBatchNorm,
    'frozenbn': FrozenBatchNorm2d,
    'gn': _group_norm,
}


def get_norm_layer(norm: Union[str, NormLayer, None], **kwargs) -> NormLayer:
    """Resolve a norm spec to a ``channels -> nn.Module`` callable.

    Args:
        norm: One of 'bn', 'syncbn', 'frozenbn', 'gn' (case-insensitive), a callable taking the channel count,
            or None for BatchNorm2d.
        **kwargs: Extra arguments bound to the norm class (e.g. ``num_groups=16`` for 'gn').
    """
    if norm is None:
        return nn.BatchNorm2d
    if callable(norm):
        return norm
    key = str(norm).lower().replace('_', '').replace('-', '')
    if key not in _NORMS:
        raise ValueError(f"norm_layer: unknown norm {norm!r}; allowed: {sorted(_NORMS)} or a callable")
    cls = _NORMS[key]
    if not kwargs:
        return cls
    return lambda c: cls(c, **kwargs)


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (Fig. 3a).

    ``shortcut`` is supplied by the tree when shapes change; ``children`` is unused and exists so blocks and trees
    share one call signature (TorchScript compiles both branches of a tree's forward).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, norm_layer: NormLayer = nn.BatchNorm2d,
                 **_):
        super().__init__()
        self.conv1 = _conv3x3(cin, cout, stride, dilation)
        self.bn1 = norm_layer(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(cout, cout, 1, dilation)
        self.bn2 = norm_layer(cout)

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


def _mid_channels(cout: int, cardinality: int, base_width: int) -> int:
    # The paper halves the bottleneck (mid = out / 2); split blocks keep cardinality * width / 2.
    return int(math.floor(cout * (base_width / 64)) * cardinality) // 2


class _ReduceTransformExpand(nn.Module):
    """What the bottleneck blocks share: 1x1 reduce -> (a 3x3 stage of the subclass's: :meth:`transform`) -> 1x1
    expand, plus the shortcut. Subclasses build ``conv1``/``bn1``, their stage, then call :meth:`_expand`."""

    def _expand(self, cin: int, cout: int, norm_layer: NormLayer) -> None:
        self.conv3 = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn3 = norm_layer(cout)
        self.relu = nn.ReLU(inplace=True)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        if shortcut is None:
            shortcut = x
        out = self.transform(self.relu(self.bn1(self.conv1(x))))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


class Bottleneck(_ReduceTransformExpand):
    """1x1 -> 3x3 -> 1x1 bottleneck (Fig. 3b); with ``cardinality > 1`` the split/ResNeXt block (Fig. 3c)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, cardinality: int = 1,
                 base_width: int = 64, norm_layer: NormLayer = nn.BatchNorm2d, **_):
        super().__init__()
        mid = _mid_channels(cout, cardinality, base_width)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = norm_layer(mid)
        self.conv2 = _conv3x3(mid, mid, stride, dilation, groups=cardinality)
        self.bn2 = norm_layer(mid)
        self._expand(mid, cout, norm_layer)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(x)))


class Res2Bottleneck(_ReduceTransformExpand):
    """Res2Net/Res2NeXt bottleneck (Gao et al.), as timm ships for dla60_res2net/dla60_res2next.

    The first block of a level (``first=True``) processes the splits in parallel and average-pools the last split;
    later blocks chain each split into the next (hierarchical residual).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1, cardinality: int = 8,
                 base_width: int = 4, scale: int = 4, first: bool = False, norm_layer: NormLayer = nn.BatchNorm2d, **_):
        super().__init__()
        width = _mid_channels(cout, cardinality, base_width)
        self.width = width
        self.scale = scale
        self.first = first or stride > 1
        self.conv1 = nn.Conv2d(cin, width * scale, 1, bias=False)
        self.bn1 = norm_layer(width * scale)
        n = max(1, scale - 1)
        self.convs = nn.ModuleList([_conv3x3(width, width, stride, dilation, groups=cardinality) for _ in range(n)])
        self.bns = nn.ModuleList([norm_layer(width) for _ in range(n)])
        self.pool = nn.AvgPool2d(3, stride, padding=1) if self.first and scale > 1 else nn.Identity()
        self._expand(width * scale, cout, norm_layer)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(x, self.width, 1)
        outs: List[torch.Tensor] = []
        sp = splits[0]
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            sp = splits[i] if i == 0 or self.first else sp + splits[i]
            sp = self.relu(bn(conv(sp)))
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]))
        return torch.cat(outs, 1)


BLOCKS: Dict[str, type] = {'basic': BasicBlock, 'bottleneck': Bottleneck, 'res2': Res2Bottleneck}


def conv_layer(cin: int, cout: int, kernel_size: int, deformable: bool = False, bias: bool = False,
               dcn_impl: str = 'auto') -> nn.Module:
    """A 'same'-padded stride-1 conv: plain or modulated deformable (DCNv2; ``dcn_impl`` picks its kernel, see
    :func:`dla_plugins.dcn.deform_conv2d`, and never changes the state_dict)."""
    from .dcn import ModulatedDeformConv2d, check_dcn_impl

    check_dcn_impl(dcn_impl, 'dcn_impl')
    if deformable:
        return ModulatedDeformConv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias, impl=dcn_impl)
    return nn.Conv2d(cin, cout, kernel_size, 1, padding=kernel_size // 2, bias=bias)


class AggregationNode(nn.Module):
    """Aggregation node N (Eq. 3): concat -> conv -> norm -> ReLU, plus the last input (Eq. 4) if ``residual``.

    HDA/IDA roots in the backbone use 1x1 convs; the IDA-Up nodes of §4.2 use 3x3 (optionally deformable, optionally
    with a conv bias as in CenterNet). Inputs are concatenated in the given order (a single input is used as is); the
    residual is ``inputs[0]`` (the deepest block of the tree). ``dcn_impl``: see :func:`conv_layer`.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 1, residual: bool = False,
                 norm_layer: NormLayer = nn.BatchNorm2d, deformable: bool = False, bias: bool = False,
                 dcn_impl: str = 'auto'):
        super().__init__()
        self.conv = conv_layer(cin, cout, kernel_size, deformable, bias, dcn_impl)
        self.bn = norm_layer(cout)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        x = self.bn(self.conv(inputs[0] if len(inputs) == 1 else torch.cat(inputs, 1)))
        if self.residual:
            x = x + inputs[0]
        return self.relu(x)


def bilinear_upsample_init(deconv: nn.ConvTranspose2d) -> None:
    """Fill a depthwise transposed conv with a bilinear interpolation kernel (the §4.2 initialisation)."""
    k = deconv.kernel_size[0]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    r = torch.arange(k, dtype=torch.float64)
    w1 = 1 - torch.abs(r / f - c)
    kernel = (w1[:, None] * w1[None, :]).to(deconv.weight.dtype)
    with torch.no_grad():
        deconv.weight.copy_(kernel.expand_as(deconv.weight))


def crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop ``x`` spatially to ``ref``'s size (upsampled maps can exceed odd-sized targets by one pixel)."""
    return x[:, :, : ref.shape[2], : ref.shape[3]]


