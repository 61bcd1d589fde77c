"""Recognise a checkpoint's layout by rule and convert it to ours (a :class:`DLA` or :class:`DLASeg` state_dict).

Every family is one :class:`~dla_plugins.checkpoint.rules.LayoutRule`, declared in its own module and ordered in
:data:`REGISTRY`. A layout is found from the keys alone: the prefix holding the DLA (``base_layer``/``level<i>`` keys),
the prefix of a DLA-Up (``dla_up.ida_<i>``), then the first rule that matches. Conversion is generic: DLA keys lose
their prefix (and get the rule's renames), DLA-Up parts are renamed by the rule's part table, the rule's own keys are
kept or skipped by its map, and anything else of a dense checkpoint (task heads) is skipped with a reason. Keys under
a DLA prefix that no rule maps keep their name, so the strict load lists them.
"""
import dataclasses
import re
from dataclasses import dataclass, field
from typing import AbstractSet, Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from ..files import CheckpointError, StateDict
from . import centernet, centernet2, mmdet3d, ucbdrive
from .hosts import HostKeys, match_host
from .rules import LEVEL_PATTERN, NECK_PATTERN, Evidence, LayoutRule
from .ucbdrive import is_deep_tree_project

__all__ = ['FAMILIES', 'REGISTRY', 'Layout', 'Conversion', 'detect_layout', 'convert_state_dict', 'rule_of']


def _own_seg_key(key: str) -> Optional[Tuple[Optional[str], Optional[str]]]:
    return (key, None) if key.startswith(('neck.', 'classifier.')) else None


def _own_seg_network(state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """DLASeg arguments of our own DLASeg state_dict, read from its shapes (``output_stride``: the coarsest level's
    stride, from the upsampling kernels)."""
    stages = {int(m.group(1)) for k in state if (m := re.match(r'neck\.idas\.(\d+)\.', k))}
    node = state['neck.idas.0.nodes.0.conv.weight']
    neck = [k for k in state if k.startswith('neck.')]
    classes = state['classifier.weight'].shape[0] if 'classifier.weight' in state else 0
    stride = 2 ** (5 - len(stages))  # the finest level's; stage k's up.1 lifts level n-2-k+1 by its stride ratio
    for k in reversed(sorted(stages)):
        up = state.get(f'neck.idas.{k}.up.1.weight')
        stride *= up.shape[-1] // 2 if up is not None else 1
    return dict(down_ratio=2 ** (5 - len(stages)), output_stride=stride,
                norm_layer=None if 'backbone.base_layer.1.running_mean' in state else 'gn',
                flavor='paper' if node.shape[1] == 2 * node.shape[0] else 'centernet',
                node_type='dcn' if any('offset_mask' in k for k in neck) else 'conv', num_classes=classes,
                bias=any(re.search(r'\.(nodes\.\d+\.conv|proj\.\d+\.0)\.bias$', k) for k in neck),
                node_kernel=int(node.shape[-1]), final_ida=any(k.startswith('neck.ida_final.') for k in neck))


OWN_SEG = LayoutRule('dla-plugins-seg', 'dla-plugins DLASeg state_dict',
                     lambda ev: ev.backbone_prefix == 'backbone.' and any(k.startswith('neck.idas.') for k in ev.keys),
                     own_keys=_own_seg_key, signature=r'^(backbone|neck|classifier)\.')
TIMM = LayoutRule('timm', 'timm / dla-plugins DLA', lambda ev: ev.neck_prefix is None, dense=False,
                  signature=r'^(base_layer|level\d)\.')
_ALL = {r.family: r for r in (OWN_SEG, TIMM, *ucbdrive.RULES, *centernet.RULES, *mmdet3d.RULES, *centernet2.RULES)}
# The order rules are tried in (first match wins): specific prefixes and module styles first, fallbacks last.
REGISTRY: Tuple[LayoutRule, ...] = tuple(_ALL[f] for f in (
    'dla-plugins-seg', 'centernet2-bifpn', 'centernet2-fpn', 'centernet2-dlaup', 'centernet2-dlaseg', 'mmdet3d',
    'fairmot', 'fairmot-conv', 'centertrack', 'centernet', 'centernet-conv', 'ucbdrive-dlaseg', 'centernet-dlav0',
    'ucbdrive', 'timm'))
assert len(REGISTRY) == len(_ALL), 'every rule has a place in REGISTRY'
FAMILIES: Dict[str, str] = {r.family: r.description for r in REGISTRY}
# Where a family may keep the DLA (longest first, so nested prefixes win ties).
_BACKBONE_PREFIXES = ('backbone.bottom_up.backbone.', 'backbone.bottom_up.', 'backbone.base.', 'backbone.', 'base.', '')
_STAGE = re.compile(r'(?:(?:dla_up\.)?ida_(\d+)|ida_up)\.(.+)$')
_NECK_BIAS = re.compile(r'(proj_\d+|node_\d+|projs\.\d+|nodes\.\d+)\.conv\.bias$')

SKIP_FC = 'ImageNet classifier of the backbone (unused by dense models)'
SKIP_PROJECT = 'unused project layer of a tree deeper than 1'
SKIP_EXTRA_INPUT = 'CenterTrack extra input conv (previous frame / heatmap)'
SKIP_HEAD = 'not part of DLA (task head, FPN, ...)'
SKIP_NECK = 'DLA-Up neck (the model has none)'
SKIP_CLASSIFIER = 'DLASeg classifier (the model has num_classes=0)'
HEADS_PREFIX = 'heads.'  # a model's task heads (CenterNet): a dense file's head keys load there by name


def rule_of(family: str) -> LayoutRule:
    """The rule of ``family`` (a key of :data:`FAMILIES`)."""
    if family not in _ALL:
        raise ValueError(f'family: unknown checkpoint family {family!r}; allowed: {list(FAMILIES)}')
    return _ALL[family]


@dataclass
class Layout:
    """A recognised checkpoint layout: its :class:`LayoutRule` and where its parts live."""

    rule: LayoutRule
    backbone_prefix: str
    neck_prefix: Optional[str] = None
    host: Optional[HostKeys] = None  # a file a host framework wrote (its keys are renamed to ours first)

    @property
    def family(self) -> str:
        return f'{self.host.host}/{self.rule.family}' if self.host else self.rule.family

    @property
    def description(self) -> str:
        return f'{self.host.host} checkpoint of {self.rule.description}' if self.host else self.rule.description

    @property
    def dense(self) -> bool:
        """A detection/segmentation checkpoint (keys outside the DLA are task heads, skipped)."""
        return self.rule.dense

    @property
    def whole_network(self) -> bool:
        """The file holds a DLA-Up: it loads into a DLASeg (see :meth:`model_kwargs`)."""
        return self.neck_prefix is not None or self.rule is OWN_SEG

    def model_kwargs(self, state: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
        """:class:`~dla_plugins.DLASeg` arguments that reproduce the checkpoint's network (empty: a plain DLA)."""
        if self.host is not None:
            state = self.host.rename(state)
        if self.rule is OWN_SEG:
            return _own_seg_network(state)
        if self.neck_prefix is None:
            return {}
        norm = None if f'{self.backbone_prefix}base_layer.1.running_mean' in state else 'gn'
        ida = re.compile(rf'{re.escape(self.neck_prefix)}(?:dla_up\.)?ida_(\d+)\.')
        stages = {int(m.group(1)) for k in state if (m := ida.match(k))}
        neck = [k for k in state if NECK_PATTERN.match(k)]
        own = self.rule.own_keys or (lambda k: None)
        classes = [v.shape[0] for k, v in state.items() if (m := own(k)) and m[0] == 'classifier.weight']
        kwargs: Dict[str, Any] = dict(down_ratio=2 ** (5 - len(stages)), output_stride=32, norm_layer=norm,
                                      flavor=self.rule.flavor,
                                      node_type='dcn' if any('offset' in k for k in neck) else 'conv',
                                      num_classes=classes[0] if classes else 0)
        kwargs.update(self.rule.network)
        if self.rule.flavor == 'centernet':
            kwargs['bias'] = any(_NECK_BIAS.search(k) for k in neck)
        return kwargs


@dataclass
class Conversion:
    """A converted state_dict and what was renamed (``'src -> dst'``) and skipped (key -> reason)."""

    layout: Layout
    state: StateDict
    converted: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)


def _unknown(state: Mapping[str, torch.Tensor]) -> CheckpointError:
    keys = sorted(state)
    scores = {r.family: sum(1 for k in keys if re.search(r.signature, k)) for r in REGISTRY if r.signature}
    best = max(scores, key=scores.get)
    lines = [f'checkpoint: unrecognised layout: no DLA (base_layer/level<i> keys) under any known prefix '
             f'{[p for p in _BACKBONE_PREFIXES if p]} or at the top level; closest recognised layout: {best} '
             f'({FAMILIES[best]}; {scores[best]} of {len(keys)} keys look like it)',
             f'  {len(keys)} unmatched key(s):'] + [f'    {k}' for k in keys]
    return CheckpointError('\n'.join(lines))


def detect_layout(state: Mapping[str, torch.Tensor]) -> Layout:
    """Recognise the layout of an unwrapped state_dict (container and ``module.`` already removed)."""
    keys = list(state)
    counts = {p: sum(1 for k in keys if k.startswith(p) and LEVEL_PATTERN.match(k[len(p):]))
              for p in _BACKBONE_PREFIXES}
    prefix = max(_BACKBONE_PREFIXES, key=lambda p: (counts[p], len(p)))
    if counts[prefix] == 0:
        host = match_host(keys)  # a host framework's own checkpoint (e.g. written by its training loop)
        if host is None:
            raise _unknown(state)
        return dataclasses.replace(detect_layout(host.rename(state)), host=host)
    necks = {m.group(1) for k in keys if (m := NECK_PATTERN.match(k))}
    if len(necks) > 1:
        raise CheckpointError(f'checkpoint: DLA-Up keys under several prefixes {sorted(necks)}; expected one')
    evidence = Evidence.of(state, prefix, necks.pop() if necks else None)
    rule = next(r for r in REGISTRY if r.matches(evidence))  # 'timm' / 'centernet-dlav0' take whatever is left
    return Layout(rule, prefix, evidence.neck_prefix)


def _neck_key(rest: str, rule: LayoutRule) -> Optional[str]:
    """A DLA-Up key (after the neck prefix) of ``rule``'s family -> ours (after ``neck.``), or None if none maps it."""
    m = _STAGE.match(rest)
    if not m:
        return None
    stage = 'ida_final' if m.group(1) is None else f'idas.{m.group(1)}'
    m2 = re.match(r'(projs|ups|nodes)\.(\d+)\.(.+)$' if rule.neck_lists else r'(proj|up|node)_(\d+)\.(.+)$',
                  m.group(2))
    if not m2:
        return None
    kind, k, part = m2.group(1).rstrip('s'), int(m2.group(2)) + rule.neck_lists, m2.group(3)
    if kind == 'up':
        return f'{stage}.up.{k}.weight' if part == 'weight' else None
    for pattern, repl in rule.neck_parts:
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


def _convert_key(key: str, layout: Layout, bb_target: str, has_neck: bool, depths: Mapping[str, int],
                 has_classifier: bool, heads: AbstractSet[str] = frozenset()) -> Tuple[Optional[str], Optional[str]]:
    """(our key, None) or (None, why it is skipped) for one checkpoint key (``heads``: the model's ``heads.*`` keys,
    where a dense file's task-head keys of the same name load)."""
    rule, p, q = layout.rule, layout.backbone_prefix, layout.neck_prefix
    if q is not None and key.startswith(q) and NECK_PATTERN.match(key):
        if not has_neck:
            return None, SKIP_NECK
        mapped = _neck_key(key[len(q):], rule)
        return (key if mapped is None else f'neck.{mapped}'), None
    if rule.own_keys is not None and (mapped := rule.own_keys(key)) is not None:
        new, reason = mapped
        if new is not None and new.startswith('neck.') and not has_neck:
            return None, SKIP_NECK
        if new is not None and new.startswith('classifier.') and not has_classifier:
            return None, SKIP_CLASSIFIER if has_neck else SKIP_NECK
        return new, reason
    if key.startswith(p):
        rest = rule.rename_backbone(key[len(p):]) if rule.rename_backbone else key[len(p):]
        if is_deep_tree_project(rest, depths):
            return None, SKIP_PROJECT
        if rule.extra_inputs is not None and rule.extra_inputs.match(rest):
            return None, SKIP_EXTRA_INPUT
        if rest.startswith('fc.') and (rule.dense or bb_target):
            return None, SKIP_FC
        return bb_target + rest, None
    if rule.dense and (key in heads or HEADS_PREFIX + key in heads):  # ours already have the prefix
        return (key if key in heads else HEADS_PREFIX + key), None
    return (None, SKIP_HEAD) if rule.dense else (key, None)


def convert_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module) -> Conversion:
    """Recognise ``state``'s layout and rename it for ``model`` (a DLA, a DLASeg, or a module holding a DLA)."""
    from .ucbdrive import _tree_depths

    layout = detect_layout(state)
    bb_target, dla, has_neck = _target(model)
    depths = _tree_depths(dla)
    own = model.state_dict()
    has_classifier = 'classifier.weight' in own
    heads = {k for k in own if k.startswith(HEADS_PREFIX)}
    conv = Conversion(layout, {})
    if layout.host is not None:
        conv.skipped.update(layout.host.skipped(state))
        state = layout.host.rename(state)
    for key, value in state.items():
        new, reason = _convert_key(key, layout, bb_target, has_neck, depths, has_classifier, heads)
        if reason is not None:
            conv.skipped[key] = reason
            continue
        if new != key:
            conv.converted.append(f'{key} -> {new}')
        conv.state[new] = value
    return conv
