"""detectron2 backbones on the core DLA: the plain multi-level backbone, DLA + detectron2's FPN, DLA + DLA-Up neck.

Classes take plain arguments (LazyConfig: ``L(DLAUpNeck)(bottom_up=L(DLABackbone)(arch='dla34'), ...)``); the
``build_dlap_*`` functions registered in ``BACKBONE_REGISTRY`` read ``MODEL.DLAP`` (see :mod:`d2_ext.config`).
"""
import math
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from detectron2.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool, LastLevelP6P7

from dla_plugins import DLAUp, create_dla, get_norm_layer
from dla_plugins.backbone import STAGES
from dla_plugins.checkpoint.guard import guard_load

__all__ = [
    'DLABackbone', 'DLAUpNeck', 'dlap_norm', 'NORMS', 'TOP_BLOCKS', 'build_dlap_backbone', 'build_dlap_fpn_backbone',
    'build_dlap_retinanet_fpn_backbone', 'build_dlap_up_backbone',
]

NORMS = ('FrozenBN', 'BN', 'SyncBN', 'naiveSyncBN', 'GN')
TOP_BLOCKS = ('', 'maxpool', 'p6p7')
LEVELS = tuple(f'level{i}' for i in range(6))
_BIAS = {'auto': None, 'on': True, 'off': False}


def dlap_norm(norm: Union[str, Callable[[int], nn.Module]], arg: str = 'norm') -> Callable[[int], nn.Module]:
    """A ``channels -> module`` norm factory from a detectron2 norm name, built with detectron2's ``get_norm``.

    'GN' is the core's GroupNorm (``gcd(32, channels)`` groups: DLA's first levels have 16 or 32 channels).
    """
    if callable(norm):
        return norm
    if norm not in NORMS:
        raise ValueError(f'{arg}: unknown norm {norm!r}; allowed: {list(NORMS)} or a callable')
    if norm == 'GN':
        return get_norm_layer('gn')
    return lambda c: get_norm(norm, c)


class DLABackbone(Backbone):
    """DLA as a detectron2 backbone: returns the outputs of the chosen levels ('level0'..'level5', strides 1..32).

    The core :class:`dla_plugins.DLA` (headless) lives in ``self.dla``; its state_dict keys are timm's under the
    ``dla.`` prefix.

    Args:
        arch: DLA variant (e.g. 'dla34', 'dla46_c', 'dla60x').
        out_features: Level names to return.
        norm: 'FrozenBN', 'BN', 'SyncBN', 'naiveSyncBN', 'GN' (detectron2's ``get_norm``) or a callable.
        freeze_at: 0 trains everything; 1 freezes the stem (base_layer, level0, level1); k >= 2 also freezes
            level2..level{k}. Frozen parts get ``requires_grad=False`` and frozen BatchNorms.
        output_stride: 32, 16 or 8 (level5/level4 dilated instead of strided).
        grad_checkpointing: Recompute levels in the backward pass to save memory.
        in_chans: Input channels.
    """

    def __init__(self, arch: str = 'dla34', out_features: Sequence[str] = ('level2', 'level3', 'level4', 'level5'),
                 norm: Union[str, Callable[[int], nn.Module]] = 'FrozenBN', freeze_at: int = 0,
                 output_stride: int = 32, grad_checkpointing: bool = False, in_chans: int = 3):
        super().__init__()
        out_features = list(out_features)
        bad = [f for f in out_features if f not in LEVELS]
        if not out_features or bad:
            raise ValueError(f'out_features: unknown level(s) {bad}; allowed: {list(LEVELS)}')
        if not isinstance(freeze_at, int) or not 0 <= freeze_at <= len(STAGES):
            raise ValueError(f'freeze_at: must be an integer in 0..{len(STAGES)}, got {freeze_at!r}')
        self.dla = guard_load(create_dla(arch, num_classes=0, in_chans=in_chans, output_stride=output_stride,
                                         norm_layer=dlap_norm(norm)), 'DLA')  # detectron2 loads non-strictly
        self.dla.set_grad_checkpointing(grad_checkpointing)
        self._indices = [LEVELS.index(f) for f in out_features]
        self._out_features = out_features
        info = {f['module']: f for f in self.dla.feature_info}
        self._out_feature_channels = {f: info[f]['num_chs'] for f in out_features}
        self._out_feature_strides = {f: info[f]['reduction'] for f in out_features}
        self.freeze_at = freeze_at
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0) -> 'DLABackbone':
        """Freeze the first ``freeze_at`` stages of the core's stage table (see the class docstring); returns self."""
        for name, module in self.dla.stage_modules(freeze_at):
            for p in module.parameters():
                p.requires_grad_(False)
            setattr(self.dla, name, FrozenBatchNorm2d.convert_frozen_batchnorm(module))
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.dla.forward_intermediates(x, indices=self._indices, stop_early=True, intermediates_only=True)
        return dict(zip(self._out_features, feats))


class DLAUpNeck(Backbone):
    """DLA-Up (iterative deep aggregation, §4.2) as an FPN-like detectron2 ``Backbone`` wrapping ``bottom_up``.

    The levels ``in_features`` of ``bottom_up`` go through :class:`dla_plugins.DLAUp`: output ``j`` aggregates input
    ``j`` and every coarser one at input ``j``'s stride. A 3x3 conv maps each to ``out_channels`` (0 keeps the level
    widths). Outputs are named ``p<log2(stride)>`` like detectron2's FPN; ``top_block`` (e.g. ``LastLevelMaxPool``
    or ``LastLevelP6P7``) adds coarser ones from its ``in_feature`` (a neck output or a ``bottom_up`` feature).

    Args:
        bottom_up: A backbone (usually :class:`DLABackbone`) returning at least ``in_features``.
        in_features: Its features to aggregate, finest first, with strictly increasing strides.
        out_channels: Width of every output; 0 keeps each level's own width.
        node_type: 'conv' or 'dcn' (modulated deformable) aggregation nodes.
        flavor: 'paper' (ucbdrive's DLA-Up) or 'centernet' (CenterNet's DLA-Up; its first output is then the final
            IDA-Up stage CenterNet feeds its heads), see :class:`dla_plugins.DLAUp`.
        bias: Conv bias of the DLA-Up 3x3 convs (None: the flavour's default; mmdetection3d's conv neck: True).
        node_kernel: Kernel of the aggregation nodes (3; 1 for CenterNet2's ``DLAUP``).
        final_ida: The final IDA-Up stage (None: with flavor='centernet'; CenterNet2's ``DLAUP`` has none).
        dcn_impl: Kernel of deformable nodes: 'auto', 'native' (pure PyTorch) or 'torchvision' (same weights).
        norm: Norm inside DLA-Up ('GN', 'BN', 'SyncBN', 'naiveSyncBN', 'FrozenBN' or a callable).
        top_block: Optional module adding coarser levels (detectron2's top-block interface).
        size_divisibility: What the model pads inputs to (0: no padding; DLA-Up itself accepts any size).
    """

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str], out_channels: int = 256,
                 node_type: str = 'conv', norm: Union[str, Callable[[int], nn.Module]] = 'GN',
                 top_block: Optional[nn.Module] = None, size_divisibility: int = 32, flavor: str = 'paper',
                 bias: Optional[bool] = None, node_kernel: int = 3, final_ida: Optional[bool] = None,
                 dcn_impl: str = 'auto'):
        super().__init__()
        shapes = bottom_up.output_shape()
        in_features = list(in_features)
        bad = [f for f in in_features if f not in shapes]
        if len(in_features) < 2 or bad:
            raise ValueError(f'in_features: need >= 2 features of bottom_up; unknown: {bad}, '
                             f'available: {list(shapes)}')
        strides = [shapes[f].stride for f in in_features]
        if any(s2 <= s1 for s1, s2 in zip(strides, strides[1:])) or any(s & (s - 1) for s in strides):
            raise ValueError(f'in_features: strides must be strictly increasing powers of 2 (use output_stride=32), '
                             f'got {dict(zip(in_features, strides))}')
        if not isinstance(out_channels, int) or out_channels < 0:
            raise ValueError(f'out_channels: must be an integer >= 0, got {out_channels!r}')
        self.bottom_up = bottom_up
        self.in_features = in_features
        chans = [shapes[f].channels for f in in_features]
        self.dla_up = guard_load(DLAUp(chans, strides, node_type=node_type, norm_layer=dlap_norm(norm, 'norm'),
                                       flavor=flavor, bias=bias, node_kernel=node_kernel, final_ida=final_ida,
                                       dcn_impl=dcn_impl), 'DLAUp', all_or_nothing=True)
        self.output_convs = nn.ModuleList()
        for c in chans:
            if out_channels:
                conv = Conv2d(c, out_channels, 3, padding=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)
                self.output_convs.append(conv)
            else:
                self.output_convs.append(nn.Identity())
        self._out_features = [f'p{int(math.log2(s))}' for s in strides]
        self._out_feature_strides = dict(zip(self._out_features, strides))
        self._out_feature_channels = {n: out_channels or c for n, c in zip(self._out_features, chans)}
        self.top_block = top_block
        if top_block is not None:
            if top_block.in_feature not in self._out_features and top_block.in_feature not in shapes:
                raise ValueError(f'top_block: in_feature {top_block.in_feature!r} is neither a neck output '
                                 f'{self._out_features} nor a bottom_up feature {list(shapes)}')
            stage, stride = int(math.log2(strides[-1])), strides[-1]
            top_channels = out_channels or chans[-1]
            for _ in range(top_block.num_levels):
                stage, stride = stage + 1, stride * 2
                self._out_features.append(f'p{stage}')
                self._out_feature_strides[f'p{stage}'] = stride
                self._out_feature_channels[f'p{stage}'] = top_channels
        if not isinstance(size_divisibility, int) or size_divisibility < 0:
            raise ValueError(f'size_divisibility: must be an integer >= 0, got {size_divisibility!r}')
        self._size_divisibility = size_divisibility

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        bottom = self.bottom_up(x)
        pyramid = self.dla_up([bottom[f] for f in self.in_features])
        outs: List[torch.Tensor] = [conv(p) for conv, p in zip(self.output_convs, pyramid)]
        if self.top_block is not None:
            name = self.top_block.in_feature
            src = outs[self._out_features.index(name)] if name in self._out_features[:len(outs)] else bottom[name]
            outs.extend(self.top_block(src))
        return dict(zip(self._out_features, outs))


# --- cfg builders (MODEL.DLAP, see d2_ext.config) ---------------------------------------------------------------
def _bottom_up(cfg, input_shape: ShapeSpec, neck: Optional[str] = None) -> DLABackbone:
    d = cfg.MODEL.DLAP
    if neck is not None and d.OUTPUT_STRIDE != 32:  # else detectron2's FPN only asserts on non-contiguous strides
        raise ValueError(f'MODEL.DLAP.OUTPUT_STRIDE: {neck} needs 32 (16 and 8 dilate level5/level4, which then share '
                         f'a stride), got {d.OUTPUT_STRIDE}')
    return DLABackbone(arch=d.ARCH, out_features=d.OUT_FEATURES, norm=d.NORM, freeze_at=d.FREEZE_AT,
                       output_stride=d.OUTPUT_STRIDE, grad_checkpointing=d.GRAD_CHECKPOINTING,
                       in_chans=input_shape.channels)


@BACKBONE_REGISTRY.register()
def build_dlap_backbone(cfg, input_shape: ShapeSpec) -> DLABackbone:
    """Plain DLA returning ``MODEL.DLAP.OUT_FEATURES``."""
    return _bottom_up(cfg, input_shape)


@BACKBONE_REGISTRY.register()
def build_dlap_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """DLA + detectron2's FPN over ``MODEL.DLAP.OUT_FEATURES`` + ``LastLevelMaxPool`` (Faster/Mask R-CNN)."""
    bottom_up = _bottom_up(cfg, input_shape, neck='the FPN')
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.DLAP.OUT_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_dlap_retinanet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """DLA + detectron2's FPN + ``LastLevelP6P7`` fed by the coarsest DLA level (RetinaNet, p3-p7)."""
    bottom_up = _bottom_up(cfg, input_shape, neck='the FPN')
    last = cfg.MODEL.DLAP.OUT_FEATURES[-1]
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    top = LastLevelP6P7(bottom_up.output_shape()[last].channels, out_channels, in_feature=last)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.DLAP.OUT_FEATURES, out_channels=out_channels,
               norm=cfg.MODEL.FPN.NORM, top_block=top, fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


def _top_block(kind: str, channels: int, in_feature: str) -> Optional[nn.Module]:
    if kind not in TOP_BLOCKS:
        raise ValueError(f'MODEL.DLAP.NECK.TOP_BLOCK: unknown top block {kind!r}; allowed: {list(TOP_BLOCKS)}')
    if kind == 'maxpool':
        top = LastLevelMaxPool()
        top.in_feature = in_feature
        return top
    if kind == 'p6p7':
        return LastLevelP6P7(channels, channels, in_feature=in_feature)
    return None


@BACKBONE_REGISTRY.register()
def build_dlap_up_backbone(cfg, input_shape: ShapeSpec) -> DLAUpNeck:
    """DLA + DLA-Up neck over ``MODEL.DLAP.OUT_FEATURES`` with ``MODEL.DLAP.NECK.*`` (top block on its last output)."""
    bottom_up = _bottom_up(cfg, input_shape, neck='the DLA-Up neck')
    n = cfg.MODEL.DLAP.NECK
    for key in ('BIAS', 'FINAL_IDA'):
        if n[key] not in _BIAS:
            raise ValueError(f'MODEL.DLAP.NECK.{key}: unknown value {n[key]!r}; allowed: {list(_BIAS)}')
    shapes = bottom_up.output_shape()
    last = cfg.MODEL.DLAP.OUT_FEATURES[-1]
    channels = n.OUT_CHANNELS or shapes[last].channels
    top = _top_block(n.TOP_BLOCK, channels, f'p{int(math.log2(shapes[last].stride))}')
    return DLAUpNeck(bottom_up, cfg.MODEL.DLAP.OUT_FEATURES, out_channels=n.OUT_CHANNELS, node_type=n.NODE_TYPE,
                     norm=n.NORM, top_block=top, size_divisibility=n.SIZE_DIVISIBILITY, flavor=n.FLAVOR,
                     bias=_BIAS[n.BIAS], node_kernel=n.NODE_KERNEL, final_ida=_BIAS[n.FINAL_IDA],
                     dcn_impl=n.DCN_IMPL)
