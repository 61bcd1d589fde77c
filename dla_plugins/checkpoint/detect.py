"""Recognise a checkpoint's layout by rule and convert it to ours (a :class:`DLA` or :class:`DLASeg` state_dict).

A layout is found from the keys alone: the prefix holding the DLA (``base_layer``/``level<i>`` keys), the prefix and
module style of a DLA-Up (``dla_up.ida_<i>``), and the project's heads. Conversion renames every key by the
family's rules; keys that are not DLA (task heads, ImageNet classifiers of dense models, unused layers) are skipped
and listed with a reason. Keys under a DLA prefix that no rule maps keep their name, so the strict load lists them.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .centernet import CENTERNET_NECK_PARTS, EXTRA_INPUT_CONV, family_of_heads
from .centernet2 import BOTTOM_UP_PREFIXES, CENTERNET2_DLAUP_PARTS, CENTERNET2_NECK_PARTS
from .io import CheckpointError, StateDict
from .mmdet3d import MMDET3D_NECK_PARTS, rename_backbone_key
from .ucbdrive import PAPER_NECK_PARTS, is_deep_tree_project, ucbdrive_dlaseg_key

__all__ = ['FAMILIES', 'Layout', 'Conversion', 'detect_layout', 'convert_state_dict']

FAMILIES: Dict[str, str] = {
    'timm': 'timm / dla-plugins DLA',
    'ucbdrive': 'ucbdrive/dla ImageNet classifier (dla.py)',
    'ucbdrive-dlaseg': 'ucbdrive/dla dla_up.py DLASeg',
    'centernet-dlav0': 'CenterNet dlav0 (paper DLA-Up)',
    'centernet': 'CenterNet pose_dla_dcn',
    'centernet-conv': 'CenterNet-style pose_dla_conv (no DCN)',
    'fairmot': 'FairMOT pose_dla_dcn',
    'fairmot-conv': 'FairMOT pose_dla_conv',
    'centertrack': 'CenterTrack pose_dla_dcn',
    'mmdet3d': 'mmdetection3d DLANet + DLANeck (SMOKE, MonoFlex)',
    'centernet2-dlaseg': 'CenterNet2 build_dla_backbone (DLASeg)',
    'centernet2-dlaup': 'CenterNet2 build_dlaup_backbone (DLAUP, 1x1 conv nodes)',
    'centernet2-fpn': 'CenterNet2 DLA-FPN/BiFPN bottom-up (backbone.bottom_up.; also omni3d Cube R-CNN)',
    'centernet2-bifpn': 'CenterNet2 fcos-BiFPN bottom-up (backbone.bottom_up.backbone.)',
}
# Where each family keeps the DLA (longest first, so nested prefixes win ties).
_BACKBONE_PREFIXES = ('backbone.bottom_up.backbone.', 'backbone.bottom_up.', 'backbone.base.', 'backbone.', 'base.', '')
_NECK = re.compile(r'^(|neck\.|backbone\.)(?:(?:dla_up\.)?ida_\d+|ida_up)\.')
_STAGE = re.compile(r'(?:(?:dla_up\.)?ida_(\d+)|ida_up)\.(.+)$')
_LEVEL = re.compile(r'(?:base_layer|level[0-5])\.')
_NECK_PARTS = {'paper': PAPER_NECK_PARTS, 'centernet': CENTERNET_NECK_PARTS, 'mmdet3d': MMDET3D_NECK_PARTS,
               'centernet2': CENTERNET2_NECK_PARTS, 'centernet2-dlaup': CENTERNET2_DLAUP_PARTS}
# What a family's own keys look like (to name the closest layout of an unrecognised file).
_SIGNATURES = {
    'timm': r'^(base_layer|level\d)\.', 'ucbdrive-dlaseg': r'^(base|dla_up|fc|up)\.',
    'centernet': r'^(base|dla_up|ida_up|hm|wh|reg)\.', 'mmdet3d': r'^(backbone|neck|bbox_head)\.',
    'centernet2-dlaseg': r'^backbone\.(base|dla_up|ida_up)\.', 'centernet2-fpn': r'^backbone\.bottom_up\.',
}

SKIP_FC = 'ImageNet classifier of the backbone (unused by dense models)'
SKIP_PROJECT = 'unused project layer of a tree deeper than 1'
SKIP_EXTRA_INPUT = 'CenterTrack extra input conv (previous frame / heatmap)'
SKIP_HEAD = 'not part of DLA (task head, FPN, ...)'
SKIP_UP = 'frozen bilinear upsampling of the logits (ours: F.interpolate)'
SKIP_NECK = 'DLA-Up neck (the model has none)'
SKIP_CLASSIFIER = 'DLASeg classifier (the model has num_classes=0)'


@dataclass
class Layout:
    """A recognised checkpoint layout: ``family`` (a key of :data:`FAMILIES`) and where its parts live."""

    family: str
    backbone_prefix: str
    neck_prefix: Optional[str] = None
    neck_style: Optional[str] = None  # 'paper', 'centernet', 'mmdet3d', 'centernet2'

    @property
    def description(self) -> str:
        return FAMILIES[self.family]

    @property
    def dense(self) -> bool:
        """A detection/segmentation checkpoint (keys outside the DLA are task heads, skipped)."""
        return self.family not in ('timm', 'ucbdrive')

    def model_kwargs(self, state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
        """:class:`~dla_plugins.DLASeg` arguments that reproduce the checkpoint's network (empty: a plain DLA)."""
        if self.neck_prefix is None:
            return {}
        norm = None if f'{self.backbone_prefix}base_layer.1.running_mean' in state else 'gn'
        ida = re.compile(rf'{re.escape(self.neck_prefix)}(?:dla_up\.)?ida_(\d+)\.')
        stages = {int(m.group(1)) for k in state if (m := ida.match(k))}
        neck = {k: v for k, v in state.items() if _NECK.match(k)}
        kwargs: Dict[str, Any] = dict(down_ratio=2 ** (5 - len(stages)), output_stride=32, norm_layer=norm,
                                      flavor='paper' if self.neck_style == 'paper' else 'centernet',
                                      node_type='dcn' if any('offset' in k for k in neck) else 'conv',
                                      num_classes=state['fc.0.weight'].shape[0] if 'fc.0.weight' in state else 0)
        if self.neck_style == 'centernet2-dlaup':
            kwargs.update(node_kernel=1, final_ida=False)
        if kwargs['flavor'] == 'centernet':
            kwargs['bias'] = any(re.search(r'(proj_\d+|node_\d+|projs\.\d+|nodes\.\d+)\.conv\.bias$', k) for k in neck)
        return kwargs


@dataclass
class Conversion:
    """A converted state_dict and what was renamed (``'src -> dst'``) and skipped (key -> reason)."""

    layout: Layout
    state: StateDict
    converted: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)


def _count(keys: List[str], pattern: str) -> int:
    return sum(1 for k in keys if re.search(pattern, k))


def _unknown(state: Mapping[str, torch.Tensor]) -> CheckpointError:
    keys = sorted(state)
    scores = {fam: _count(keys, pat) for fam, pat in _SIGNATURES.items()}
    best = max(scores, key=scores.get)
    lines = [f'checkpoint: unrecognised layout: no DLA (base_layer/level<i> keys) under any known prefix '
             f'{[p for p in _BACKBONE_PREFIXES if p]} or at the top level; closest recognised layout: {best} '
             f'({FAMILIES[best]}; {scores[best]} of {len(keys)} keys look like it)',
             f'  {len(keys)} unmatched key(s):'] + [f'    {k}' for k in keys]
    return CheckpointError('\n'.join(lines))


def detect_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """Recognise the layout of an unwrapped state_dict (container and ``module.`` already removed)."""
    keys = list(state)
    counts = {p: sum(1 for k in keys if k.startswith(p) and _LEVEL.match(k[len(p):])) for p in _BACKBONE_PREFIXES}
    prefix = max(_BACKBONE_PREFIXES, key=lambda p: (counts[p], len(p)))
    if counts[prefix] == 0:
        raise _unknown(state)
    necks = {m.group(1) for k in keys if (m := _NECK.match(k))}
    if len(necks) > 1:
        raise CheckpointError(f'checkpoint: DLA-Up keys under several prefixes {sorted(necks)}; expected one')
    if not necks:
        if prefix in BOTTOM_UP_PREFIXES:
            return Layout(BOTTOM_UP_PREFIXES[prefix], prefix)
        if prefix == 'backbone.' and any('.norm1.' in k for k in keys):
            return Layout('mmdet3d', prefix)
        return Layout('timm', prefix)
    q = necks.pop()
    neck = [k[len(q):] for k in keys if _NECK.match(k)]
    if any(re.match(r'dla_up\.ida_\d+\.projs\.', k) for k in neck):
        return Layout('mmdet3d', prefix, q, 'mmdet3d')
    if any(re.search(r'(proj|node)_\d+\.conv\.0\.weight', k) for k in neck):
        return Layout('centernet2-dlaup', prefix, q, 'centernet2-dlaup')
    if any(re.search(r'proj_\d+\.offset\.', k) for k in neck):
        return Layout('centernet2-dlaseg', prefix, q, 'centernet2')
    if any(re.search(r'(proj|node)_\d+\.actf\.', k) for k in neck):
        deformable = any('conv_offset_mask' in k for k in neck)
        return Layout(family_of_heads(state, prefix, deformable), prefix, q, 'centernet')
    family = 'ucbdrive-dlaseg' if 'fc.0.weight' in state or 'up.weight' in state else 'centernet-dlav0'
    return Layout(family, prefix, q, 'paper')


def _neck_key(rest: str, style: str) -> Optional[str]:
    """A DLA-Up key (after the neck prefix) in ``style`` -> ours (after ``neck.``), or None if no rule maps it."""
    m = _STAGE.match(rest)
    if not m:
        return None
    stage = 'ida_final' if m.group(1) is None else f'idas.{m.group(1)}'
    if style == 'mmdet3d':
        m2 = re.match(r'(projs|ups|nodes)\.(\d+)\.(.+)$', m.group(2))
        if not m2:
            return None
        kind, k, part = m2.group(1)[:-1], int(m2.group(2)) + 1, m2.group(3)
    else:
        m2 = re.match(r'(proj|up|node)_(\d+)\.(.+)$', m.group(2))
        if not m2:
            return None
        kind, k, part = m2.group(1), int(m2.group(2)), m2.group(3)
    if kind == 'up':
        return f'{stage}.up.{k}.weight' if part == 'weight' else None
    for pattern, repl in _NECK_PARTS[style]:
        if re.fullmatch(pattern, part):
            role, suffix = re.sub(f'^{pattern}$', repl, part).split(':')
            if kind == 'proj':
                return f"{stage}.proj.{k}.{0 if role == 'conv' else 1}.{suffix}"
            return f"{stage}.nodes.{k - 1}.{'conv' if role == 'conv' else 'bn'}.{suffix}"
    return None


def _target(model: nn.Module) -> Tuple[str, Optional[nn.Module], bool]:
    """(backbone prefix in the model's state_dict, the DLA, whether the model has a DLA-Up under ``neck.``)."""
    from ..backbone import DLA

    if isinstance(getattr(model, 'backbone', None), DLA):
        return 'backbone.', model.backbone, hasattr(model, 'neck')
    return '', model, False


def convert_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> Conversion:
    """Recognise ``state``'s layout and rename it for ``model`` (a DLA, a DLASeg, or a module holding a DLA)."""
    from .ucbdrive import _tree_depths

    layout = detect_layout(state)
    bb_target, dla, has_neck = _target(model)
    depths = _tree_depths(dla)
    own = model.state_dict()
    conv = Conversion(layout, {})
    p, q = layout.backbone_prefix, layout.neck_prefix
    for key, value in state.items():
        new: Optional[str] = key
        reason: Optional[str] = None
        if q is not None and key.startswith(q) and _NECK.match(key):
            if not has_neck:
                reason = SKIP_NECK
            else:
                mapped = _neck_key(key[len(q):], layout.neck_style)
                new = key if mapped is None else f'neck.{mapped}'
        elif key.startswith(p):
            rest = key[len(p):]
            if layout.family == 'mmdet3d':
                rest = rename_backbone_key(rest)
            if is_deep_tree_project(rest, depths):
                reason = SKIP_PROJECT
            elif EXTRA_INPUT_CONV.match(rest) and layout.dense:
                reason = SKIP_EXTRA_INPUT
            elif rest.startswith('fc.') and (layout.dense or bb_target):
                reason = SKIP_FC
            else:
                new = bb_target + rest
        elif layout.family == 'ucbdrive-dlaseg' and (mapped := ucbdrive_dlaseg_key(key)):
            new = mapped if has_neck and 'classifier.weight' in own else None
            reason = None if new else (SKIP_NECK if not has_neck else SKIP_CLASSIFIER)
        elif layout.family == 'ucbdrive-dlaseg' and key == 'up.weight':
            reason = SKIP_UP
        elif layout.dense:
            reason = SKIP_HEAD
        if reason is not None:
            conv.skipped[key] = reason
            continue
        if new != key:
            conv.converted.append(f'{key} -> {new}')
        conv.state[new] = value
    if layout.family == 'timm' and any(r == SKIP_PROJECT for r in conv.skipped.values()):
        layout.family = 'ucbdrive'
    return conv
