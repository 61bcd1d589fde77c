"""ucbdrive/dla layout (the original DLA release): differs from ours (= timm's) only by unused ``project`` layers."""
import re
from typing import Dict, List, Mapping

import torch
import torch.nn as nn

from .io import StateDict

__all__ = ['is_ucbdrive_layout', 'convert_ucbdrive']


def _tree_depths(model: nn.Module) -> Dict[str, int]:
    from ..backbone import HDATree

    return {name: m.depth for name, m in model.named_modules() if isinstance(m, HDATree)}


_PROJECT = re.compile(r'^(level\d(?:\.tree[12])*)\.project\.')


def is_ucbdrive_layout(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> bool:
    """True if the state_dict has ucbdrive's ``project`` layers in trees deeper than 1 (never used by forward)."""
    depths = _tree_depths(model)
    return any((m := _PROJECT.match(k)) and depths.get(m.group(1), 1) > 1 for k in state_dict)


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
        m = _PROJECT.match(k)
        if m and depths.get(m.group(1), 1) > 1:
            dropped.append(k)
        else:
            out[k] = v
    return out, dropped
