"""``DLA`` backbone for mmsegmentation: the core :class:`dla_plugins.DLA` behind mmseg's dict-config interface."""
import math
import os
from functools import partial
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.logging import MMLogger
from mmengine.model import BaseModule, PretrainedInit, initialize
from mmengine.registry import WEIGHT_INITIALIZERS
from mmseg.registry import MODELS

from dla_plugins import CheckpointError, create_dla, load_checkpoint
from dla_plugins.backbone import NUM_LEVELS, STAGES
from dla_plugins.checkpoint.guard import guard_load
from dla_plugins.files import weights_name

__all__ = ['DLA', 'NORM_TYPES', 'norm_layer_from_cfg']

NORM_TYPES = ('BN', 'BN2d', 'SyncBN', 'GN')
InitCfg = Union[Dict[str, Any], Sequence[Dict[str, Any]], None]


def _build_norm(norm_cfg: Dict[str, Any], num_channels: int) -> nn.Module:
    cfg = dict(norm_cfg)
    if cfg['type'] == 'GN':  # narrow DLA levels (16/32 channels) cannot hold 32 groups: use the largest divisor
        cfg['num_groups'] = math.gcd(int(cfg.get('num_groups', 32)), num_channels)
    return build_norm_layer(cfg, num_channels)[1]


def norm_layer_from_cfg(norm_cfg: Optional[Dict[str, Any]]):
    """Translate an OpenMMLab ``norm_cfg`` into the core's ``channels -> module`` ``norm_layer`` callable.

    Layers are built by mmcv's ``build_norm_layer`` (so ``requires_grad``/``eps``/``momentum`` keys work). For 'GN'
    the group count is reduced to ``gcd(num_groups, channels)`` on narrow layers. None means ``dict(type='BN')``.
    """
    norm_cfg = dict(type='BN') if norm_cfg is None else dict(norm_cfg)
    if not isinstance(norm_cfg.get('type'), str) or norm_cfg['type'] not in NORM_TYPES:
        raise ValueError(f"norm_cfg: unsupported type {norm_cfg.get('type')!r}; allowed: {list(NORM_TYPES)}")
    return partial(_build_norm, norm_cfg)


def _missing_file_advice(path: str) -> str:
    where = '' if os.path.isabs(path) else f' (relative to the working directory {os.getcwd()!r})'
    return (f'{where}; model.backbone.init_cfg.checkpoint names the ImageNet file: point it at yours with '
            f'--cfg-options model.backbone.init_cfg.checkpoint=PATH, or train from scratch with '
            f'--cfg-options model.backbone.init_cfg=None')


def _split_init_cfg(init_cfg: InitCfg) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, Any]]]:
    """(mmengine initialiser dicts, the ``Pretrained`` dict or None) of an ``init_cfg`` as ``BaseModule`` takes it."""
    if init_cfg is None:
        return [], None
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else init_cfg
    if not isinstance(cfgs, (list, tuple)) or not all(isinstance(c, dict) for c in cfgs):
        raise ValueError(f'init_cfg: None, a dict or a list of dicts expected, got {init_cfg!r}')
    known = WEIGHT_INITIALIZERS.module_dict
    for c in cfgs:
        if c.get('type') not in known and c.get('type') not in known.values():
            raise ValueError(f"init_cfg: unknown initializer {c.get('type')!r}; allowed: {sorted(known)}")
    pretrained = [c for c in cfgs if c['type'] in ('Pretrained', PretrainedInit)]
    if len(pretrained) > 1:
        raise ValueError(f'init_cfg: at most one Pretrained entry, got {len(pretrained)}')
    for c in pretrained:
        unknown = sorted(set(c) - {'type', 'checkpoint'})
        if unknown:
            raise ValueError(f'init_cfg: unsupported keys {unknown}; allowed: type, checkpoint')
        if 'checkpoint' not in c:
            raise ValueError(f"init_cfg: Pretrained needs checkpoint=PATH, got {dict(c)!r}")
    initializers = [c for c in cfgs if c['type'] not in ('Pretrained', PretrainedInit)]
    return initializers, (pretrained[0] if pretrained else None)


@MODELS.register_module()
class DLA(BaseModule):
    """Deep Layer Aggregation backbone (Yu et al., CVPR 2018) returning the outputs of the chosen levels.

    Args:
        arch: Variant name, canonical or paper name (see :func:`dla_plugins.list_variants`), e.g. 'dla34'.
        out_indices: Levels to return (0-5; level ``i`` has stride ``2**i`` unless dilated).
        output_stride: 32, 16 or 8; 16/8 replace the stride of level5 (and level4) by dilation.
        in_channels: Input image channels.
        norm_cfg: 'BN', 'SyncBN' or 'GN' norm config, built with mmcv's ``build_norm_layer``.
        frozen_stages: mmseg's ResNet meaning: -1 freezes nothing, 0 the stem (``base_layer``, ``level0``,
            ``level1``: everything at stride <= 2), k >= 1 the stem and ``level2``..``level{k+1}``.
        norm_eval: Keep every BatchNorm of the backbone in eval mode (frozen statistics) during training.
        with_cp: Gradient checkpointing: each level is recomputed in the backward pass.
        init_cfg: None (the core's initialisation), one init dict or a list of them, as mmengine's ``BaseModule``
            takes: mmengine's initialisers (``dict(type='Kaiming', layer='Conv2d')``, ...) run first, in order, then
            at most one ``dict(type='Pretrained', checkpoint=PATH)`` with a checkpoint of any recognised layout or a
            registry name (``'dlap://dla34.in1k'``), loaded strictly by :func:`dla_plugins.load_checkpoint` with the
            classifier dropped.
    """

    def __init__(self, arch: str = 'dla34', out_indices: Sequence[int] = (2, 3, 4, 5), output_stride: int = 32,
                 in_channels: int = 3, norm_cfg: Optional[Dict[str, Any]] = None, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False, init_cfg: InitCfg = None):
        _split_init_cfg(init_cfg)  # a bad entry fails when the model is built, not at init_weights
        super().__init__(init_cfg=init_cfg)
        out_indices = tuple(out_indices)
        if not out_indices or any(not isinstance(i, int) or not 0 <= i < NUM_LEVELS for i in out_indices):
            raise ValueError(f'out_indices: level indices in 0..{NUM_LEVELS - 1} expected, got {out_indices}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < len(STAGES):
            raise ValueError(f'frozen_stages: must be an integer in -1..{len(STAGES) - 1}, got {frozen_stages!r}')
        self.arch, self.out_indices = arch, out_indices
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        self.body = guard_load(create_dla(arch, num_classes=0, in_chans=in_channels, output_stride=output_stride,
                                          norm_layer=norm_layer_from_cfg(norm_cfg)), 'DLA')  # mmengine: non-strict
        if with_cp:
            self.body.set_grad_checkpointing(True)
        info = self.body.feature_info
        self.out_channels: List[int] = [info[i]['num_chs'] for i in out_indices]
        self.out_strides: List[int] = [info[i]['reduction'] for i in out_indices]
        self._freeze_stages()

    def _frozen_modules(self) -> List[nn.Module]:
        return [m for _, m in self.body.stage_modules(self.frozen_stages + 1)]

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def init_weights(self) -> None:
        """Run ``init_cfg``'s mmengine initialisers, then load its ``Pretrained`` checkpoint strictly into the DLA
        (classifier dropped), logging one line through mmengine's current logger; without ``init_cfg`` keep the core
        init. ``checkpoint='dlap://dla34.in1k'`` names a registry file, fetched on first use
        (:mod:`dla_plugins.weights`); its line names the source and hash status.

        Raises:
            CheckpointError: the file is missing (the message names both config fixes), unreadable or mismatched.
            WeightsError: a registry file that cannot be fetched (the message lists every source tried).
        """
        initializers, pretrained = _split_init_cfg(self.init_cfg)
        if initializers:
            initialize(self, initializers)
        if pretrained is not None:
            path = pretrained['checkpoint']
            try:
                report = load_checkpoint(self.body, path, classifier='drop')
            except CheckpointError as e:
                if weights_name(path) is not None or os.path.isfile(os.fspath(path)):
                    raise
                raise CheckpointError(f'{e}{_missing_file_advice(os.fspath(path))}') from None
            MMLogger.get_current_instance().info(
                f'DLA init_cfg: {report.weights}' if report.weights else
                f'DLA init_cfg: loaded {path!r} into {self.arch} (layout: {report.layout}): '
                f'{len(self.body.state_dict())} tensors loaded, {len(report.converted)} renamed, '
                f'{len(report.skipped)} skipped, {len(report.dropped_classifier)} classifier tensors dropped')
        self._is_init = True

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.body.forward_intermediates(x, indices=list(self.out_indices), stop_early=True,
                                                     intermediates_only=True))

    def train(self, mode: bool = True) -> 'DLA':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
