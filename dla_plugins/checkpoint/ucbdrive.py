"""ucbdrive/dla layouts (the original DLA release): the ImageNet classifiers (``dla.py``) and ``dla_up.py``'s DLASeg.

The classifier differs from ours (= timm's) only by unused ``project`` layers. DLASeg stores the backbone under
``base.`` (with its ImageNet ``fc``), the paper DLA-Up under ``dla_up.ida_<i>.{proj,up,node}_<k>`` (nn.Sequential
conv, norm, ReLU), the classifier as ``fc.0`` and a frozen bilinear ``up`` transposed conv. CenterNet's ``dlav0``
uses the same DLA-Up (without ``fc``/``up``).
"""
import re
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from .io import StateDict

__all__ = ['is_ucbdrive_layout', 'convert_ucbdrive', 'is_deep_tree_project', 'PAPER_NECK_PARTS',
           'ucbdrive_dlaseg_key']


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


def is_ucbdrive_layout(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> bool:
    """True if the state_dict has ucbdrive's ``project`` layers in trees deeper than 1 (never used by forward)."""
    depths = _tree_depths(model)
    return any(is_deep_tree_project(k, depths) for k in state_dict)


def convert_ucbdrive(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> tuple:
    """Convert a ucbdrive/dla state_dict to our (= timm's) layout, by rule.

    Rule: ucbdrive builds a ``project`` conv+BN in every tree whose input and output widths differ, but a tree of
    depth > 1 never uses it (its first subtree projects instead): those keys are dropped. Nothing else changes
    (its missing ``num_batches_tracked`` counters are handled by :func:`load_checkpoint` for every layout).

    Returns:
        (converted state_dict, list of dropped keys)
    """
    depths = _tree_depths(model)
    out: StateDict = {}
    dropped: List[str] = []
    for k, v in state_dict.items():
        if is_deep_tree_project(k, depths):
            dropped.append(k)
        else:
            out[k] = v
    return out, dropped


def ucbdrive_dlaseg_key(key: str) -> Optional[str]:
    """DLASeg's own classifier ``fc.0.*`` -> our ``classifier.*`` (None for other keys)."""
    m = re.fullmatch(r'fc\.0\.(weight|bias)', key)
    return f'classifier.{m.group(1)}' if m else None
