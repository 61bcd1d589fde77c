"""Deformable convolution (DCNv2, modulated) for the aggregation nodes of DLA-Up.

:func:`deform_conv2d` has ``torchvision.ops.deform_conv2d``'s signature and semantics (offset layout ``(dy, dx)`` per
kernel point and offset group, zero outside the image, optional modulation mask) and two implementations:

- ``'native'``: pure PyTorch, no custom build. Sampling positions and bilinear weights are computed in fp32 (bf16
  would misplace samples by up to a pixel on large maps); each sampled value enters through one weighted gather
  (``F.embedding_bag`` with per-sample weights: the 4 bilinear corners, the modulation mask and, when the weight is
  applied first, the sum over kernel points, all in one call). Two orders, picked by estimated cost:
  *transform first* (``Y_k = W_k x`` as one GEMM over the input, then gather-and-sum ``Y`` at the sampled points:
  no column tensor, fewer sampled channels when ``C_out < C_in``) and *sample first* (gather the ``C_in x k x k``
  columns, then one GEMM; cheaper for strided convs). The gather's backward sorts the indices once and runs the
  transposed map as another ``embedding_bag`` (no serial scatter); eager training recomputes ``Y`` and the sampling
  weights in backward, so saved activations match torchvision's. Forward and backward, fp32/bf16/fp16,
  ``torch.compile(fullgraph=True)``, channels_last, ``torch.export``; under ONNX export the gather is written with
  plain operators (``Gather``, ``Mul``, ``ReduceSum``, ``MatMul``).
- ``'torchvision'``: ``torchvision.ops.deform_conv2d`` (exports to ONNX ``DeformConv``, opset 19).

``'auto'`` (the default) picks ``'native'`` on CPU in every dtype and on CUDA in bf16/fp16 (torchvision's kernel has
no reduced-precision path and autocasts to fp32), and ``'torchvision'`` for CUDA fp32 when torchvision is installed
(``'native'`` without it) until a GPU measurement says otherwise (``python -m benchmarks.bench_dcn --device
cuda``); see ``docs/benchmarks.md``.
"""
import functools
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._extras import require

__all__ = ['deform_conv2d', 'ModulatedDeformConv2d', 'DCN_IMPLS', 'resolve_dcn_impl', 'check_dcn_impl']

DCN_IMPLS = ('auto', 'native', 'torchvision')
IntPair = Union[int, Tuple[int, int]]

# Relative cost of one gathered, weighted sample-channel (per corner) against one GEMM multiply-add: a rough
# estimate that only picks between the two native orders (both give the same result).
_GATHER_COST = 4.0


def check_dcn_impl(impl: str, name: str = 'impl') -> str:
    """``impl`` if it names an implementation, else a ValueError naming the argument ``name`` and the allowed values."""
    if impl not in DCN_IMPLS:
        raise ValueError(f'{name}: unknown deformable conv implementation {impl!r}; allowed: {list(DCN_IMPLS)}')
    return impl


def resolve_dcn_impl(impl: str, device: torch.device, dtype: torch.dtype) -> str:
    """The implementation ``impl`` stands for on ``device``/``dtype``: 'native' or 'torchvision' (rule above)."""
    if check_dcn_impl(impl) != 'auto':
        return impl
    if device.type == 'cuda' and dtype == torch.float32 and not torch.is_autocast_enabled('cuda') \
            and _torchvision_installed():
        return 'torchvision'
    return 'native'


@functools.cache
def _torchvision_installed() -> bool:
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:
        return False
    return True


def _pair(v: IntPair, name: str) -> Tuple[int, int]:
    t = (v, v) if isinstance(v, int) else tuple(int(i) for i in v)
    if len(t) != 2:
        raise ValueError(f'{name}: expected an int or a pair of ints, got {v!r}')
    return t


def _bilinear(py: torch.Tensor, px: torch.Tensor, h: int, w: int,
              index_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices ``y * w + x`` and weights of the 4 bilinear corners (last dim); zero weight outside the image."""
    y0, x0 = py.floor(), px.floor()
    ly, lx = py - y0, px - x0
    ys, xs = torch.stack((y0, y0 + 1), -1), torch.stack((x0, x0 + 1), -1)
    wy = torch.stack((1 - ly, ly), -1) * ((ys >= 0) & (ys <= h - 1)).to(py.dtype)
    wx = torch.stack((1 - lx, lx), -1) * ((xs >= 0) & (xs <= w - 1)).to(px.dtype)
    yi, xi = ys.clamp(0, h - 1).to(index_dtype), xs.clamp(0, w - 1).to(index_dtype)
    idx = (yi.unsqueeze(-1) * w + xi.unsqueeze(-2)).flatten(-2)
    return idx, (wy.unsqueeze(-1) * wx.unsqueeze(-2)).flatten(-2)


class _WeightedGather(torch.autograd.Function):
    """``embedding_bag`` (sum, per-sample weights) with a faster backward for the table.

    ``embedding_bag``'s own table gradient is a serial scatter; here the entries are sorted by row once and the
    gradient is another (parallel) ``embedding_bag`` over the transposed map: row ``r`` sums ``w * grad[bag]`` over
    its entries. The weights' gradient is ATen's per-sample-weights backward. Fixed shapes: compiles fullgraph.
    """

    @staticmethod
    def forward(table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode='sum')

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        table, rows, weights = ctx.saved_tensors
        grad = grad.contiguous()
        b, j = rows.shape
        flat = rows.reshape(-1)
        n_rows, g_table, g_weights = table.shape[0], None, None
        if ctx.needs_input_grad[2]:
            offsets = torch.arange(0, b * j, j, device=flat.device, dtype=flat.dtype)
            bag_of = torch.div(torch.arange(b * j, device=flat.device, dtype=flat.dtype), j, rounding_mode='floor')
            # The gradient of embedding_bag's per-sample weights has no public entry point: this private ATen op is
            # what autograd itself calls for F.embedding_bag (used here only, inside this backward).
            g_weights = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                grad, table, flat, offsets, bag_of, 0, -1).view(b, j)  # mode 0: sum
        del table  # not needed below: freed before the table-sized gradient is allocated
        if ctx.needs_input_grad[0]:
            idx = flat.int() if n_rows < 2 ** 31 else flat
            ordered, order = idx.sort()
            starts = torch.searchsorted(ordered, torch.arange(n_rows, device=idx.device, dtype=idx.dtype))
            bags = torch.div(order, j, rounding_mode='floor').to(idx.dtype)
            g_table = F.embedding_bag(bags, grad, starts.to(idx.dtype), per_sample_weights=weights.reshape(-1)[order],
                                      mode='sum')
        return g_table, None, g_weights


def _weighted_gather(table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, plain: bool) -> torch.Tensor:
    """``out[b] = sum_j weights[b, j] * table[rows[b, j]]``: one ``embedding_bag``, or plain ops for ONNX."""
    weights = weights.to(table.dtype)
    if plain:
        return (table[rows] * weights.unsqueeze(-1)).sum(-2)
    if torch.is_grad_enabled() and (table.requires_grad or weights.requires_grad) and not torch.jit.is_tracing():
        return _WeightedGather.apply(table, rows, weights)
    return F.embedding_bag(rows, table, per_sample_weights=weights, mode='sum')


def _dense_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """``(C_out, C_in, k*k)`` weight with zeros between groups (groups are rare in DCN; the GEMM stays one call)."""
    cout, cin_g, kh, kw = weight.shape
    if groups == 1:
        return weight.reshape(cout, cin_g, kh * kw)
    wg = weight.reshape(groups, cout // groups, cin_g, kh * kw)
    eye = torch.eye(groups, dtype=weight.dtype, device=weight.device)
    return torch.einsum('gock,gh->gohck', wg, eye).reshape(cout, groups * cin_g, kh * kw)


def _transform_first(h: int, w: int, ho: int, wo: int, cin: int, cout: int, og: int) -> bool:
    """Whether weighting before sampling is estimated cheaper (per kernel point: GEMM MACs + gathered channels)."""
    tf = h * w * cin * cout + _GATHER_COST * 4 * ho * wo * og * cout
    sf = ho * wo * cin * cout + _GATHER_COST * 4 * ho * wo * cin
    return tf <= sf


def _sample_points(offset: torch.Tensor, mask: Optional[torch.Tensor], h: int, w: int, kh: int, kw: int,
                   stride: Tuple[int, int], padding: Tuple[int, int], dilation: Tuple[int, int],
                   transform_first: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rows and weights (bilinear x mask, fp32) of the weighted gather, in the table layout of either order.

    Transform first: one bag per output pixel over (offset group, kernel point, corner), rows of ``Y`` ordered
    (image, group, pixel, kernel point). Sample first: one bag of 4 corners per (output pixel, group, kernel point),
    rows of ``x`` ordered (image, group, pixel).
    """
    n, ho, wo = offset.shape[0], offset.shape[2], offset.shape[3]
    k = kh * kw
    og = offset.shape[1] // (2 * k)
    dev = offset.device
    off = offset.float().reshape(n, og, k, 2, ho, wo)  # positions in fp32, whatever the input dtype
    ky = (torch.arange(kh, device=dev, dtype=torch.float32) * dilation[0]).repeat_interleave(kw)
    kx = (torch.arange(kw, device=dev, dtype=torch.float32) * dilation[1]).repeat(kh)
    by = torch.arange(ho, device=dev, dtype=torch.float32) * stride[0] - padding[0]
    bx = torch.arange(wo, device=dev, dtype=torch.float32) * stride[1] - padding[1]
    py = off[:, :, :, 0] + (ky.view(k, 1, 1) + by.view(1, ho, 1))
    px = off[:, :, :, 1] + (kx.view(k, 1, 1) + bx.view(1, 1, wo))
    index_dtype = torch.int32 if n * og * h * w * k < 2 ** 31 else torch.int64
    idx, wts = _bilinear(py, px, h, w, index_dtype)  # (n, og, k, ho, wo, 4)
    if mask is not None:
        wts = wts * mask.float().reshape(n, og, k, ho, wo, 1)
    image = (torch.arange(n, device=dev, dtype=index_dtype).view(n, 1) * og
             + torch.arange(og, device=dev, dtype=index_dtype).view(1, og)) * (h * w)
    idx = idx + image.view(n, og, 1, 1, 1, 1)
    if transform_first:
        idx = idx * k + torch.arange(k, device=dev, dtype=index_dtype).view(1, 1, k, 1, 1, 1)
    bag = (n * ho * wo, og * k * 4) if transform_first else (n * ho * wo * og * k, 4)
    return idx.permute(0, 3, 4, 1, 2, 5).reshape(bag), wts.permute(0, 3, 4, 1, 2, 5).reshape(bag)


def _transform_then_gather(x_pix: torch.Tensor, w_k: torch.Tensor, offset: torch.Tensor, mask: Optional[torch.Tensor],
                           h: int, w: int, kh: int, kw: int, stride: Tuple[int, int], padding: Tuple[int, int],
                           dilation: Tuple[int, int], plain: bool) -> torch.Tensor:
    """``Y = x W_k`` for every kernel point (one GEMM), then the weighted gather-sum of ``Y`` rows per output pixel."""
    rows, wts = _sample_points(offset, mask, h, w, kh, kw, stride, padding, dilation, True)
    y = torch.matmul(x_pix, w_k)  # (n, og, h*w, k*cout)
    return _weighted_gather(y.reshape(-1, w_k.shape[-1] // (kh * kw)), rows, wts, plain)


def _deform_conv2d_native(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                          mask: Optional[torch.Tensor], stride: Tuple[int, int], padding: Tuple[int, int],
                          dilation: Tuple[int, int], plain: bool = False) -> torch.Tensor:
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    k = kh * kw
    og = offset.shape[1] // (2 * k)
    cg = cin // og
    ho, wo = offset.shape[2], offset.shape[3]
    wfull = _dense_weight(weight, cin // cin_g).reshape(cout, og, cg, k)
    x_pix = x.permute(0, 2, 3, 1).reshape(n, h * w, og, cg).transpose(1, 2)  # (n, og, hw, cg): a view if NHWC
    if _transform_first(h, w, ho, wo, cin, cout, og):
        args = (x_pix, wfull.permute(1, 2, 3, 0).reshape(og, cg, k * cout), offset, mask, h, w, kh, kw, stride,
                padding, dilation, plain)
        if not plain and torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad) \
                and not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()):
            # training, eager: Y and the sampling weights are recomputed in backward rather than kept, so peak memory
            # stays at torchvision's (one extra GEMM per backward); compiled graphs leave this to the partitioner
            out = checkpoint(_transform_then_gather, *args, use_reentrant=False)
        else:
            out = _transform_then_gather(*args)
    else:
        rows, wts = _sample_points(offset, mask, h, w, kh, kw, stride, padding, dilation, False)
        cols = _weighted_gather(x_pix.reshape(n * og * h * w, cg), rows, wts, plain)
        out = torch.matmul(cols.reshape(n * ho * wo, og * k * cg), wfull.permute(1, 3, 2, 0).reshape(-1, cout))
    out = out.reshape(n, ho, wo, cout).permute(0, 3, 1, 2)  # channels_last strides
    if bias is not None:
        out = out + bias.view(1, cout, 1, 1).to(out.dtype)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


def _check_shapes(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  mask: Optional[torch.Tensor], stride: Tuple[int, int], padding: Tuple[int, int],
                  dilation: Tuple[int, int]) -> None:
    if x.dim() != 4 or offset.dim() != 4 or weight.dim() != 4:
        raise ValueError(f'input/offset/weight: expected 4-d tensors, got {x.dim()}, {offset.dim()}, {weight.dim()}')
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    if cin_g == 0 or cin % cin_g or cout % (cin // cin_g):
        raise ValueError(f'weight: {cin_g} input channels per group do not divide input channels {cin} and the '
                         f'output channels {cout} into the same groups')
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    k2 = 2 * kh * kw
    if offset.shape[0] != n or offset.shape[1] == 0 or offset.shape[1] % k2 or cin % (offset.shape[1] // k2) \
            or tuple(offset.shape[2:]) != (ho, wo):
        raise ValueError(f'offset: expected shape ({n}, 2*offset_groups*{kh}*{kw}, {ho}, {wo}) with offset_groups '
                         f'dividing {cin} input channels, got {tuple(offset.shape)}')
    if mask is not None and tuple(mask.shape) != (n, offset.shape[1] // 2, ho, wo):
        raise ValueError(f'mask: expected shape {(n, offset.shape[1] // 2, ho, wo)}, got {tuple(mask.shape)}')
    if bias is not None and tuple(bias.shape) != (cout,):
        raise ValueError(f'bias: expected shape ({cout},), got {tuple(bias.shape)}')


def deform_conv2d(input: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1, mask: Optional[torch.Tensor] = None,
                  impl: str = 'auto') -> torch.Tensor:
    """Deformable convolution v1/v2 with ``torchvision.ops.deform_conv2d``'s arguments and semantics.

    Args:
        input: ``(N, C_in, H, W)``.
        offset: ``(N, 2 * offset_groups * kh * kw, H_out, W_out)``, ``(dy, dx)`` per kernel point (row-major) within
            each offset group; offset group ``g`` moves input channels ``g * C_in / offset_groups ...``.
        weight: ``(C_out, C_in / groups, kh, kw)``.
        bias: ``(C_out,)`` or None.
        stride, padding, dilation: int or (h, w) pair.
        mask: ``(N, offset_groups * kh * kw, H_out, W_out)`` modulation (DCNv2) or None (DCNv1).
        impl: 'native' (pure PyTorch), 'torchvision', or 'auto': 'native' on CPU and for CUDA bf16/fp16,
            'torchvision' for CUDA fp32.

    Returns:
        ``(N, C_out, H_out, W_out)``; channels_last when ``input`` is.
    """
    impl = resolve_dcn_impl(impl, input.device, input.dtype)
    stride, padding, dilation = _pair(stride, 'stride'), _pair(padding, 'padding'), _pair(dilation, 'dilation')
    if impl == 'torchvision':
        tv_deform_conv2d = require('torchvision.ops', 'torchvision', "impl='torchvision'").deform_conv2d
        return tv_deform_conv2d(input, offset, weight, bias, stride, padding, dilation, mask)
    _check_shapes(input, offset, weight, bias, mask, stride, padding, dilation)
    return _deform_conv2d_native(input, offset, weight, bias, mask, stride, padding, dilation,
                                 plain=torch.onnx.is_in_onnx_export())


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable conv (DCNv2) on :func:`deform_conv2d`: no custom build.

    Offsets and masks come from a zero-initialised conv, so at initialisation it equals a plain conv with
    mask 0.5 everywhere (DCNv2's convention). ``impl`` ('auto', 'native', 'torchvision') only picks the kernel: the
    parameters and state_dict are the same for every implementation.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, bias: bool = False, impl: str = 'auto'):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.impl = check_dcn_impl(impl)
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.offset_mask = nn.Conv2d(cin, 3 * kernel_size * kernel_size, kernel_size, stride, padding, dilation)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=torch.sigmoid(mask), impl=self.impl)

    def extra_repr(self) -> str:
        cout, cin, k, _ = self.weight.shape
        return (f'{cin}, {cout}, kernel_size={k}, stride={self.stride}, padding={self.padding}, '
                f'dilation={self.dilation}, bias={self.bias is not None}, impl={self.impl!r}')
