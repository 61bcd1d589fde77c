"""Strict checkpoint loading with complete error reports; foreign layouts are converted first."""
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
import torch.nn as nn

from .detect import SKIP_PROJECT, convert_state_dict
from .io import CheckpointError, StateDict, read_state_dict, unwrap_state_dict

__all__ = ['LoadReport', 'adapt_input_conv', 'load_checkpoint']

_logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did beyond a plain strict load.

    ``layout`` is the recognised family (see :data:`~dla_plugins.checkpoint.detect.FAMILIES`), ``converted`` the
    renamed keys (``'src -> dst'``), ``skipped`` every checkpoint key not loaded (key -> reason: task heads,
    ImageNet classifiers of dense models, unused layers), ``model_kwargs`` the DLASeg arguments of the
    checkpoint's own network.
    """

    layout: str = 'timm'
    description: str = ''
    converted: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    dropped_unused: List[str] = field(default_factory=list)
    dropped_classifier: List[str] = field(default_factory=list)
    adapted_input_conv: Optional[str] = None
    model_kwargs: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per skip reason, with counts (for logs and the CLI)."""
        reasons: Dict[str, List[str]] = {}
        for key, reason in self.skipped.items():
            reasons.setdefault(reason, []).append(key)
        lines = [f'layout: {self.layout} ({self.description}); {len(self.converted)} key(s) renamed']
        lines += [f'skipped {len(keys)} key(s): {reason}: {", ".join(keys[:4])}{", ..." if len(keys) > 4 else ""}'
                  for reason, keys in reasons.items()]
        return '\n'.join(lines)


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
    """Load a checkpoint of any recognised layout into a DLA or DLASeg (or a module holding a DLA at the top level).

    The layout is recognised by rule (:func:`~dla_plugins.checkpoint.detect.detect_layout`: timm, ucbdrive
    classifier and DLASeg, CenterNet pose_dla_dcn/dlav0, FairMOT, CenterTrack, mmdetection3d, CenterNet2) and
    converted; what is not DLA (task heads, ...) is skipped and listed in the report. Loading is always strict.
    Allowed, explicit deviations: ``drop_classifier`` ignores the checkpoint's classifier (``fc``, or ``classifier``
    of a DLASeg) and leaves the model's freshly initialised, ``adapt_in_chans`` adapts a 3-channel first conv to the
    model's input channels. On any other mismatch a :class:`CheckpointError` lists every missing, unexpected and
    mis-shaped key.
    """
    if isinstance(path_or_state_dict, Mapping):
        state = unwrap_state_dict(path_or_state_dict, 'the given mapping')
    else:
        state = read_state_dict(path_or_state_dict)
    conv = convert_state_dict(state, model)
    report = LoadReport(layout=conv.layout.family, description=conv.layout.description, converted=conv.converted,
                        skipped=conv.skipped, model_kwargs=conv.layout.model_kwargs(state))
    state = conv.state
    report.dropped_unused = [k for k, r in conv.skipped.items() if r == SKIP_PROJECT]
    if hasattr(model, 'classifier') and not hasattr(model, 'fc'):
        classifier = 'classifier'
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
        network = ''
        if report.model_kwargs:
            args = ', '.join(f'{k}={v!r}' for k, v in report.model_kwargs.items())
            network = f'; its network is DLASeg({args})'
        lines = [f'checkpoint does not match {type(model).__name__} (layout: {report.layout}{network}):']
        if report.skipped:
            lines.append(f'  ({len(report.skipped)} key(s) skipped as not DLA: {sorted(set(report.skipped.values()))})')
        for title, keys in (('missing', missing), ('unexpected', unexpected), ('mis-shaped', misshaped)):
            if keys:
                lines.append(f'  {len(keys)} {title} key(s):')
                lines += [f'    {k}' for k in keys]
        raise CheckpointError('\n'.join(lines))
    model.load_state_dict(state, strict=True)
    if report.layout != 'timm':
        _logger.info('%s', report.summary())
    return report
