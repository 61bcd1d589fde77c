"""ucbdrive/dla layouts (the original DLA release): the ImageNet classifiers (``dla.py``) and ``dla_up.py``'s DLASeg.

The classifier differs from ours (= timm's) only by unused ``project`` layers. DLASeg stores the backbone under
``base.`` (with its ImageNet ``fc``), the paper DLA-Up under ``dla_up.ida_<i>.{proj,up,node}_<k>`` (nn.Sequential
conv, norm, ReLU), the classifier as ``fc.0`` and a frozen bilinear ``up`` transposed conv. CenterNet's ``dlav0``
uses the same DLA-Up (without ``fc``/``up``).
"""
import re
from typing import Dict, Mapping, Optional, Tuple

import torch.nn as nn

from .rules import Evidence, LayoutRule

__all__ = ['is_deep_tree_project', 'has_deep_tree_projects', 'PAPER_NECK_PARTS', 'ucbdrive_dlaseg_key', 'RULES']


def _tree_depths(model: nn.Module) -> Dict[str, int]:
    from ..backbone import HDATree

    return {name: m.depth for name, m in model.named_modules() if isinstance(m, HDATree)}


_PROJECT = re.compile(r'^(level\d(?:\.tree[12])*)\.project\.')

# Paper-style (concat) IDA-Up modules are nn.Sequential(conv, norm, ReLU): part -> (conv | norm, our suffix).
PAPER_NECK_PARTS: Tuple[Tuple[str, str], ...] = ((r'0\.weight', 'conv:weight'), (r'1\.(.+)', r'norm:\1'))


def is_deep_tree_project(key: str, depths: Mapping[str, int]) -> bool:
    """True for a ``project`` layer of a tree deeper than 1: built by ucbdrive (and CenterNet, mmdetection3d,
    CenterNet2, which copied its Tree) but never used by its forward."""
    m = _PROJECT.match(key)
    return bool(m) and depths.get(m.group(1), 1) > 1


def ucbdrive_dlaseg_key(key: str) -> Optional[str]:
    """DLASeg's own classifier ``fc.0.*`` -> our ``classifier.*`` (None for other keys)."""
    m = re.fullmatch(r'fc\.0\.(weight|bias)', key)
    return f'classifier.{m.group(1)}' if m else None


SKIP_UP = 'frozen bilinear upsampling of the logits (ours: F.interpolate)'


def has_deep_tree_projects(ev: Evidence) -> bool:
    """ucbdrive's unused ``project`` layers, from the keys alone: a tree with a ``project`` whose ``tree1`` is itself
    a tree (``tree1.tree1``/``tree1.root``), i.e. a tree deeper than 1 (ours and timm's have none there)."""
    p = ev.backbone_prefix
    trees = {m.group(1) for k in ev.keys if k.startswith(p) and (m := _PROJECT.match(k[len(p):]))}
    return any(k.startswith(f'{p}{t}.tree1.tree1.') or k.startswith(f'{p}{t}.tree1.root.') for t in trees
               for k in ev.keys)


def _dlaseg_own_key(key: str):
    if key == 'up.weight':
        return None, SKIP_UP
    mapped = ucbdrive_dlaseg_key(key)
    return (mapped, None) if mapped else None


RULES = (
    LayoutRule('ucbdrive-dlaseg', 'ucbdrive/dla dla_up.py DLASeg',
               lambda ev: ev.neck_prefix is not None and (ev.has('fc.0.weight') or ev.has('up.weight')),
               neck_parts=PAPER_NECK_PARTS, flavor='paper', own_keys=_dlaseg_own_key,
               signature=r'^(base|dla_up|fc|up)\.'),
    LayoutRule('ucbdrive', 'ucbdrive/dla ImageNet classifier (dla.py)',
               lambda ev: ev.neck_prefix is None and has_deep_tree_projects(ev), flavor='paper', dense=False),
)
"""ucbdrive's classifier and DLASeg; CenterNet's ``dlav0`` (the same paper DLA-Up) is in :mod:`.centernet`."""
