"""``DLAUpHead``: the DLA-Up segmentation decoder of §4.2 (iterative IDA upsampling) as an mmseg decode head."""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from dla_plugins import DLAUp
from dla_plugins.checkpoint.guard import guard_load

from .backbone import norm_layer_from_cfg

__all__ = ['DLAUpHead']


@MODELS.register_module()
class DLAUpHead(BaseDecodeHead):
    """DLA-Up over the selected backbone levels, then mmseg's 1x1 classifier (``conv_seg``) at the finest stride.

    The levels are aggregated coarse-to-fine by the core :class:`dla_plugins.DLAUp` (IDA-Up stages with learned,
    bilinear-initialised upsampling and 3x3 aggregation nodes); its finest output, at the stride and width of the first
    selected level, is classified. mmseg resizes the logits to the labels (loss) or the image (predict).

    Args:
        in_channels: Widths of the selected levels, finest first (e.g. ``[64, 128, 256, 512]`` for dla34 levels 2-5).
        strides: Strides of the selected levels (e.g. ``[4, 8, 16, 32]``, or ``[4, 8, 8, 8]`` at output_stride 8);
            each must divide the next.
        channels: Width fed to ``conv_seg``; it is the width of the finest level, ``in_channels[0]`` (the default).
        node_type: 'conv' or 'dcn' (modulated deformable) aggregation nodes.
        flavor: 'paper' (ucbdrive's DLA-Up, the default) or 'centernet' (CenterNet's DLA-Up + final IDA-Up), see
            :class:`dla_plugins.DLAUp`.
        bias: Conv bias of the DLA-Up 3x3 convs (None: the flavour's default; mmdetection3d's conv neck: True).
        node_kernel: Kernel of the aggregation nodes (3; 1 for CenterNet2's ``DLAUP``).
        final_ida: The final IDA-Up stage (None: with flavor='centernet').
        dcn_impl: Kernel of deformable nodes: 'auto', 'native' (pure PyTorch) or 'torchvision' (same weights).
        norm_cfg: 'BN', 'SyncBN' or 'GN' norm config for DLA-Up (None: BN).
        **kwargs: :class:`BaseDecodeHead` arguments (``num_classes``, ``in_index``, ``dropout_ratio``,
            ``loss_decode``, ``align_corners``, ...). ``input_transform`` is always 'multiple_select'.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], channels: Optional[int] = None,
                 node_type: str = 'conv', norm_cfg: Optional[Dict[str, Any]] = None, flavor: str = 'paper',
                 bias: Optional[bool] = None, node_kernel: int = 3, final_ida: Optional[bool] = None,
                 dcn_impl: str = 'auto', **kwargs: Any):
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2:
            raise ValueError(f'in_channels: need the widths of >= 2 levels, got {in_channels!r}')
        if not isinstance(strides, (list, tuple)) or len(strides) != len(in_channels):
            raise ValueError(f'strides: need one stride per in_channels entry ({len(in_channels)}), got {strides!r}')
        if channels is not None and channels != in_channels[0]:
            raise ValueError(f'channels: DLA-Up outputs the width of the finest level, in_channels[0]='
                             f'{in_channels[0]}; got {channels}')
        transform = kwargs.pop('input_transform', 'multiple_select')
        if transform != 'multiple_select':
            raise ValueError(f"input_transform: DLAUpHead needs 'multiple_select', got {transform!r}")
        kwargs.setdefault('in_index', list(range(len(in_channels))))
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        super().__init__(list(in_channels), in_channels[0], input_transform='multiple_select', norm_cfg=norm_cfg,
                         **kwargs)
        self.strides = list(strides)
        self.dla_up = guard_load(DLAUp(list(in_channels), self.strides, node_type=node_type,
                                       norm_layer=norm_layer_from_cfg(norm_cfg), flavor=flavor, bias=bias,
                                       node_kernel=node_kernel, final_ida=final_ida, dcn_impl=dcn_impl),
                                 'DLAUp', all_or_nothing=True)

    def _check_strides(self, feats: List[torch.Tensor]) -> None:
        h0, s0 = feats[0].shape[-2], self.strides[0]
        for x, s in zip(feats, self.strides):
            expect = h0 * s0 / s
            if abs(x.shape[-2] - expect) > 1:
                raise ValueError(f'strides: declared {self.strides}, but the inputs have heights '
                                 f'{[f.shape[-2] for f in feats]}; set the backbone strides (output_stride)')

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        feats = list(self._transform_inputs(inputs))
        if not torch.jit.is_scripting():
            self._check_strides(feats)
        return self.cls_seg(self.dla_up(feats)[0])
