"""Inference-optimised DLA: BatchNorm folded into convs, fused conv+bias+ReLU(+residual) ops, channels_last.

``optimize_for_inference(model)`` returns an eval-only copy whose outputs equal the original's (eval mode) to ~1e-5.
Every conv followed by a BatchNorm (or FrozenBatchNorm2d) gets the norm folded into its weight and a bias; blocks and
aggregation nodes are replaced by fused equivalents whose convs run as one oneDNN primitive each (conv + bias +
ReLU, or conv + bias + residual add + ReLU) on CPU, and as plain ``F.conv2d`` calls elsewhere (CUDA, TorchScript,
ONNX export, ``torch.compile`` which fuses by itself). Modules with other norms (GroupNorm) are left unchanged.
"""
import copy
import functools
import warnings
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..dcn import ModulatedDeformConv2d
from ..layers import AggregationNode, BasicBlock, Bottleneck, FrozenBatchNorm2d, Res2Bottleneck

__all__ = ['FusedConv', 'optimize_for_inference', 'InferenceModel', 'fold_bn', 'MEMORY_FORMATS']

MEMORY_FORMATS = ('auto', 'channels_last', 'contiguous')
_FOLDABLE = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)


@functools.cache
def _mkldnn_ops_available() -> bool:
    # conv + bias + ReLU (+ add) as one oneDNN primitive exists only as the private mkldnn._convolution_pointwise
    # op (what inductor itself emits); FusedConv alone uses it. A torch without it falls back to plain ops, saying so
    # once (tests/deploy/test_fuse.py fails on such a torch, so the loss of the fast path is never silent).
    if not torch.backends.mkldnn.is_available():
        return False
    if not hasattr(torch.ops.mkldnn, '_convolution_pointwise'):
        warnings.warn(f'optimize_for_inference: torch {torch.__version__} has no private oneDNN op '
                      'mkldnn._convolution_pointwise; fused convs fall back to F.conv2d + ReLU (slower on CPU)',
                      RuntimeWarning, stacklevel=3)
        return False
    return True


def _bn_scale_shift(bn: nn.Module):
    mean, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    weight = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    bias = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    scale = weight * (var + bn.eps).rsqrt()
    return scale, bias - mean * scale


def fold_bn(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.Module):
    """Return (weight, bias) of a conv equivalent to ``bn(conv(x))`` in eval mode (computed in float64)."""
    if not isinstance(bn, _FOLDABLE) or bn.running_mean is None:
        raise ValueError(f'bn: can only fold BatchNorm2d/SyncBatchNorm/FrozenBatchNorm2d with running stats, '
                         f'got {type(bn).__name__}')
    scale, shift = _bn_scale_shift(bn)
    w = weight.detach().double() * scale.view(-1, *([1] * (weight.dim() - 1)))
    b = shift if bias is None else bias.detach().double() * scale + shift
    return w.to(weight.dtype), b.to(weight.dtype)


class FusedConv(nn.Module):
    """A conv with its BatchNorm folded in, optionally followed by ``+ other`` and/or ReLU, as one op on CPU."""

    def __init__(self, conv: nn.Conv2d, bn: Optional[nn.Module] = None, relu: bool = False):
        super().__init__()
        if bn is not None:
            w, b = fold_bn(conv.weight, conv.bias, bn)
        else:
            w = conv.weight.detach().clone()
            b = conv.bias.detach().clone() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = nn.Parameter(b, requires_grad=False)
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.groups = conv.groups
        self.relu = relu
        self.use_mkldnn = _mkldnn_ops_available()

    def _mkldnn_ok(self, x: torch.Tensor) -> bool:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        if torch.onnx.is_in_onnx_export():
            return False
        return (self.use_mkldnn and x.device.type == 'cpu' and x.dtype in (torch.float32, torch.bfloat16)
                and x.dtype == self.weight.dtype and not x.requires_grad)

    def forward(self, x: torch.Tensor, other: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not torch.jit.is_scripting() and self._mkldnn_ok(x):
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(
                    x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                    'relu' if self.relu else 'none', [], '')
            if other.dtype == x.dtype and other.shape[1] == self.weight.shape[0]:
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, other, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, 'add',
                    1.0, 'relu' if self.relu else None, [], '')
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if other is not None:
            y = y + other
        return F.relu(y) if self.relu else y

    def extra_repr(self) -> str:
        w = self.weight
        return (f'{w.shape[1] * self.groups}, {w.shape[0]}, kernel_size={tuple(w.shape[2:])}, '
                f'stride={tuple(self.stride)}, groups={self.groups}, relu={self.relu}')


class _FusedBasic(nn.Module):
    def __init__(self, b: BasicBlock):
        super().__init__()
        self.conv1 = FusedConv(b.conv1, b.bn1, relu=True)
        self.conv2 = FusedConv(b.conv2, b.bn2, relu=True)

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        return self.conv2(self.conv1(x), x if shortcut is None else shortcut)


class _FusedBottleneck(nn.Module):
    def __init__(self, b: Bottleneck):
        super().__init__()
        self.conv1 = FusedConv(b.conv1, b.bn1, relu=True)
        self.conv2 = FusedConv(b.conv2, b.bn2, relu=True)
        self.conv3 = FusedConv(b.conv3, b.bn3, relu=True)

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)), x if shortcut is None else shortcut)


class _FusedRes2(nn.Module):
    def __init__(self, b: Res2Bottleneck):
        super().__init__()
        self.width, self.scale, self.first = b.width, b.scale, b.first
        self.conv1 = FusedConv(b.conv1, b.bn1, relu=True)
        self.convs = nn.ModuleList([FusedConv(c, n, relu=True) for c, n in zip(b.convs, b.bns)])
        self.pool = b.pool
        self.conv3 = FusedConv(b.conv3, b.bn3, relu=True)

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        splits = torch.split(self.conv1(x), self.width, 1)
        outs: List[torch.Tensor] = []
        sp = splits[0]
        for i, conv in enumerate(self.convs):
            sp = splits[i] if i == 0 or self.first else sp + splits[i]
            sp = conv(sp)
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[-1]))
        return self.conv3(torch.cat(outs, 1), x if shortcut is None else shortcut)


class _FusedNode(nn.Module):
    """Aggregation node: concat -> one fused conv (+ residual) + ReLU."""

    def __init__(self, node: AggregationNode):
        super().__init__()
        self.conv = FusedConv(node.conv, node.bn, relu=True)
        self.residual = node.residual

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(inputs, 1)
        return self.conv(x, inputs[0]) if self.residual else self.conv(x)


class _FusedDeformNode(nn.Module):
    """Deformable aggregation node with the BatchNorm folded into the deformable conv's weight and bias."""

    def __init__(self, node: AggregationNode):
        super().__init__()
        dcn: ModulatedDeformConv2d = copy.deepcopy(node.conv)
        w, b = fold_bn(dcn.weight, dcn.bias, node.bn)
        dcn.weight = nn.Parameter(w, requires_grad=False)
        dcn.bias = nn.Parameter(b, requires_grad=False)
        self.conv = dcn
        self.residual = node.residual

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        x = self.conv(torch.cat(inputs, 1))
        if self.residual:
            x = x + inputs[0]
        return F.relu(x)


def _is_foldable(*norms: nn.Module) -> bool:
    return all(isinstance(n, _FOLDABLE) and n.running_mean is not None for n in norms)


def _fuse_module(m: nn.Module) -> Optional[nn.Module]:
    """The fused replacement of ``m`` or None (then its children are visited)."""
    if isinstance(m, BasicBlock) and _is_foldable(m.bn1, m.bn2):
        return _FusedBasic(m)
    if isinstance(m, Bottleneck) and _is_foldable(m.bn1, m.bn2, m.bn3):
        return _FusedBottleneck(m)
    if isinstance(m, Res2Bottleneck) and _is_foldable(m.bn1, m.bn3, *m.bns):
        return _FusedRes2(m)
    if isinstance(m, AggregationNode) and _is_foldable(m.bn):
        return _FusedDeformNode(m) if isinstance(m.conv, ModulatedDeformConv2d) else _FusedNode(m)
    if isinstance(m, nn.Sequential):
        mods = list(m)
        out: List[nn.Module] = []
        i, changed = 0, False
        while i < len(mods):
            if (isinstance(mods[i], nn.Conv2d) and i + 1 < len(mods) and _is_foldable(mods[i + 1])
                    and mods[i].padding_mode == 'zeros'):
                relu = i + 2 < len(mods) and isinstance(mods[i + 2], nn.ReLU)
                out.append(FusedConv(mods[i], mods[i + 1], relu=relu))
                i += 3 if relu else 2
                changed = True
            else:
                out.append(mods[i])
                i += 1
        if changed:
            return nn.Sequential(*out) if len(out) > 1 else out[0]
    return None


def _fuse_children(module: nn.Module) -> None:
    for name, child in module.named_children():
        new = _fuse_module(child)
        if new is not None:
            setattr(module, name, new)
            if isinstance(new, nn.Sequential):
                _fuse_children(new)
        else:
            _fuse_children(child)


class InferenceModel(nn.Module):
    """Eval-only wrapper around a fused model: converts inputs to its memory format and runs without autograd.

    ``module`` is the fused model (its ``forward_features`` etc. stay reachable there).
    """

    def __init__(self, module: nn.Module, memory_format: torch.memory_format):
        super().__init__()
        self.module = module
        self.memory_format = memory_format
        super().train(False)

    def train(self, mode: bool = True) -> 'InferenceModel':
        if mode:
            raise RuntimeError('InferenceModel is eval-only (BatchNorm is folded); train the original model instead')
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.memory_format)
        return self.module(x)


def optimize_for_inference(model: nn.Module, memory_format: str = 'auto', inplace: bool = False) -> InferenceModel:
    """Fold BatchNorms, fuse blocks/aggregation nodes and pick the memory format for inference.

    Args:
        model: A :class:`~dla_plugins.DLA`, :class:`~dla_plugins.DLASeg` or any module containing DLA blocks.
        memory_format: 'channels_last', 'contiguous' or 'auto' (channels_last: fastest on CPU/oneDNN and on
            tensor-core GPUs for these convs).
        inplace: Fuse ``model`` itself instead of a deep copy.

    Returns:
        An eval-only :class:`InferenceModel`; its outputs equal ``model.eval()``'s within float rounding.
    """
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f'memory_format: must be one of {list(MEMORY_FORMATS)}, got {memory_format!r}')
    m = model if inplace else copy.deepcopy(model)
    m.eval()
    fused = _fuse_module(m)
    if fused is not None:
        m = fused
    _fuse_children(m)
    for p in m.parameters():
        p.requires_grad_(False)
    fmt = torch.contiguous_format if memory_format == 'contiguous' else torch.channels_last
    m = m.to(memory_format=fmt)
    return InferenceModel(m, fmt)
