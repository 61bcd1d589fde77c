"""Checkpoint reading, layout conversion (ucbdrive -> timm/ours) and strict loading with complete error reports."""
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Union

import torch
import torch.nn as nn

__all__ = ['CheckpointError', 'LoadReport', 'read_state_dict', 'convert_ucbdrive', 'is_ucbdrive_layout',
           'adapt_input_conv', 'load_checkpoint']

_logger = logging.getLogger(__name__)
StateDict = Dict[str, torch.Tensor]
_WRAPPER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not match the model; the message lists every offending key."""


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did beyond a plain strict load."""

    layout: str = 'timm'
    dropped_unused: List[str] = field(default_factory=list)
    dropped_classifier: List[str] = field(default_factory=list)
    adapted_input_conv: Optional[str] = None


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
    """Read a safetensors or torch (``weights_only=True``) file and unwrap common containers.

    Accepted containers: a bare state_dict, or a dict holding it under one of 'state_dict', 'model',
    'state_dict_ema', 'model_ema'. A 'module.' prefix (DDP) is stripped from every key.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint: no such file {path!r}')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file

            obj = load_file(path, device='cpu')
        else:
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for corrupt, truncated or pickled-code files
        hint = ''
        if 'weights_only' in str(e) or 'Unsupported global' in str(e):
            hint = ' (it contains pickled Python objects; only tensors are loaded, weights_only=True)'
        elif isinstance(e, (zipfile.BadZipFile, EOFError)) or 'zip' in str(e).lower() or 'header' in str(e).lower():
            hint = ' (the file is truncated or corrupt)'
        raise CheckpointError(f'checkpoint: cannot read {path!r}{hint}: {type(e).__name__}: {e}') from e
    return _unwrap(obj, path)


def _unwrap(obj: object, source: str) -> StateDict:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'checkpoint: {source} does not hold a state_dict of tensors')
    out: StateDict = {}
    for k, v in obj.items():
        out[k[len('module.'):] if k.startswith('module.') else k] = v
    return out


def _tree_depths(model: nn.Module) -> Dict[str, int]:
    from .model import HDATree

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


def _align_bn_counters(state: StateDict, own: Mapping[str, torch.Tensor]) -> None:
    """BatchNorm ``num_batches_tracked``: fill it (0) where old checkpoints lack it; drop it where the model's norm
    is frozen (has running statistics but no counter). Only for norms present, with statistics, on both sides."""
    suffix = '.num_batches_tracked'
    for key in [k for k in own if k.endswith(suffix) and k not in state]:
        if key[: -len(suffix)] + '.running_mean' in state:
            state[key] = torch.zeros_like(own[key])
    for key in [k for k in state if k.endswith(suffix) and k not in own]:
        if key[: -len(suffix)] + '.running_mean' in own:
            del state[key]


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a 3-channel first-conv weight to ``in_chans``: sum for 1 channel, else tile RGB and rescale by 3/C."""
    if weight.shape[1] == in_chans:
        return weight
    if weight.shape[1] != 3:
        raise CheckpointError(f'in_chans: can only adapt a 3-channel first conv, checkpoint has {weight.shape[1]}')
    dtype = weight.dtype
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        reps = -(-in_chans // 3)
        w = w.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans)
    return w.to(dtype)


def _model_head_keys(model: nn.Module, classifier: str) -> List[str]:
    return [k for k in model.state_dict() if k == classifier or k.startswith(classifier + '.')]


def load_checkpoint(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, torch.Tensor]], *,
                    drop_classifier: bool = False, adapt_in_chans: bool = False, first_conv: str = 'base_layer.0',
                    classifier: str = 'fc') -> LoadReport:
    """Load a timm-layout or ucbdrive-layout checkpoint into a DLA (or a module holding one at the top level).

    Loading is always strict. Allowed, explicit deviations: ``drop_classifier`` ignores the checkpoint's classifier
    (and leaves the model's freshly initialised), ``adapt_in_chans`` adapts a 3-channel first conv to the model's
    input channels. On any other mismatch a :class:`CheckpointError` lists every missing, unexpected and mis-shaped
    key.
    """
    if isinstance(path_or_state_dict, Mapping):
        state = _unwrap(path_or_state_dict, 'the given mapping')
    else:
        state = read_state_dict(path_or_state_dict)
    report = LoadReport()
    if is_ucbdrive_layout(state, model):
        state, report.dropped_unused = convert_ucbdrive(state, model)
        report.layout = 'ucbdrive'
    else:
        state = dict(state)
    own = model.state_dict()
    _align_bn_counters(state, own)
    if drop_classifier:
        report.dropped_classifier = [k for k in state if k == classifier or k.startswith(classifier + '.')]
        for k in report.dropped_classifier:
            del state[k]
        for k in _model_head_keys(model, classifier):
            state[k] = own[k]
    w_key = f'{first_conv}.weight'
    if adapt_in_chans and w_key in state and w_key in own and state[w_key].shape != own[w_key].shape:
        state[w_key] = adapt_input_conv(state[w_key], own[w_key].shape[1])
        report.adapted_input_conv = w_key
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshaped = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                       for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or misshaped:
        lines = [f'checkpoint does not match {type(model).__name__} (layout: {report.layout}):']
        for title, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
            if keys:
                lines.append(f'  {len(keys)} {title} key(s):')
                lines += [f'    {k}' for k in keys]
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
    if report.dropped_unused:
        _logger.info('converted ucbdrive layout: dropped %d unused project keys', len(report.dropped_unused))
    return report
