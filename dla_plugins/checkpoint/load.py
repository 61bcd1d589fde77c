"""Strict checkpoint loading with complete error reports; foreign layouts are converted first."""
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..files import CheckpointError, StateDict, named_files, read_state_dict, unwrap_state_dict, weights_name
from .detect import SKIP_PROJECT, convert_state_dict

__all__ = ['LoadReport', 'adapt_input_conv', 'load_checkpoint', 'prepare_state_dict', 'note_weights',
           'CLASSIFIER_POLICIES']

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
    variant: Optional[str] = None  # set by convert()
    loaded: int = 0  # tensors taken from the checkpoint (a fresh classifier of the model's own is not counted)
    weights: Optional[str] = None  # a registry file ('dlap://NAME'): the one line hosts log (name, source, hash...)

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


CLASSIFIER_POLICIES = ('keep', 'drop', 'if_mismatched')


def _head_name(model: nn.Module) -> str:
    """The classifier of ``model``: ``classifier`` for a DLASeg, ``fc`` for a DLA (and modules holding one)."""
    return 'classifier' if hasattr(model, 'classifier') and not hasattr(model, 'fc') else 'fc'


def _apply_classifier_policy(state: StateDict, own: Mapping[str, torch.Tensor], head: str, policy: str) -> List[str]:
    """Decide on the converted state: 'keep' the checkpoint's classifier, 'drop' it (the model's fresh one stays),
    or drop it only 'if_mismatched' (absent, or another number of classes). Returns the dropped checkpoint keys."""
    if policy not in CLASSIFIER_POLICIES:
        raise ValueError(f'classifier: unknown policy {policy!r}; allowed: {list(CLASSIFIER_POLICIES)}')
    ckpt = [k for k in state if k == head or k.startswith(head + '.')]
    mine = [k for k in own if k == head or k.startswith(head + '.')]
    if policy == 'keep':
        return []
    if policy == 'if_mismatched' and sorted(ckpt) == sorted(mine) and all(state[k].shape == own[k].shape
                                                                          for k in mine):
        return []
    for k in ckpt:
        del state[k]
    for k in mine:
        state[k] = own[k]
    return ckpt


def prepare_state_dict(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, torch.Tensor]], *,
                       classifier: str = 'keep', adapt_in_chans: bool = False, first_conv: str = 'base_layer.0',
                       classifier_name: Optional[str] = None,
                       defer_in_chans: bool = False) -> Tuple[StateDict, 'LoadReport']:
    """Everything :func:`load_checkpoint` does except the load itself: the converted state_dict that fits ``model``
    exactly (same keys and shapes), and the report. Raises :class:`CheckpointError` listing every missing,
    unexpected and mis-shaped key otherwise (host loaders that might drop to a non-strict load call this first).
    ``defer_in_chans`` accepts a 3-channel first conv for a model with other input channels as it is (the caller
    adapts it, as timm does after its filter)."""
    if isinstance(path_or_state_dict, Mapping):
        state = unwrap_state_dict(path_or_state_dict, 'the given mapping')
    else:
        state = read_state_dict(path_or_state_dict)
    conv = convert_state_dict(state, model)
    report = LoadReport(layout=conv.layout.family, description=conv.layout.description, converted=conv.converted,
                        skipped=conv.skipped, model_kwargs=conv.layout.model_kwargs(state))
    state = conv.state
    report.dropped_unused = [k for k, r in conv.skipped.items() if r == SKIP_PROJECT]
    own = model.state_dict()
    _align_bn_counters(state, own)
    report.dropped_classifier = _apply_classifier_policy(state, own, classifier_name or _head_name(model), classifier)
    w_key = f'{first_conv}.weight'
    if adapt_in_chans and w_key in state and w_key in own and state[w_key].shape != own[w_key].shape:
        state[w_key] = adapt_input_conv(state[w_key], own[w_key].shape[1])
        report.adapted_input_conv = w_key
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    deferred = {w_key} if defer_in_chans and w_key in state and state[w_key].shape[1] == 3 else set()
    misshaped = sorted(f'{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
                       for k in set(own) & set(state) - deferred if state[k].shape != own[k].shape)
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
    name = weights_name(path_or_state_dict)
    report.loaded = sum(1 for k, v in state.items() if v is not own.get(k))  # not the model's own fresh classifier
    if name is not None:
        note_weights(report, name, model)
    return state, report


def note_weights(report: LoadReport, name: str, model: nn.Module) -> str:
    """Set ``report.weights``, the one line a load of registry file ``name`` logs: name, source, hash status,
    tensors loaded into ``model`` and every key skipped (task heads, classifiers dropped)."""
    variant = getattr(model, 'variant', None) or getattr(getattr(model, 'backbone', None), 'variant', None)
    into = f'{type(model).__name__}({variant})' if isinstance(variant, str) else type(model).__name__
    skipped = list(report.skipped) + report.dropped_classifier
    report.weights = named_files().load_line(name, report.loaded, skipped, into)
    return report.weights


def load_checkpoint(model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, torch.Tensor]], *,
                    classifier: str = 'keep', adapt_in_chans: bool = False, first_conv: str = 'base_layer.0',
                    classifier_name: Optional[str] = None) -> LoadReport:
    """Load a checkpoint of any recognised layout into a DLA or DLASeg (or a module holding a DLA at the top level).

    The layout is recognised by rule (:func:`~dla_plugins.checkpoint.detect.detect_layout`: timm, ucbdrive
    classifier and DLASeg, CenterNet pose_dla_dcn/dlav0, FairMOT, CenterTrack, mmdetection3d, CenterNet2, our own
    DLASeg) and converted; what is not DLA (task heads, ...) is skipped and listed in the report. Loading is always
    strict. Explicit deviations, decided on the converted state:

    Args:
        classifier: The checkpoint's classifier (``fc`` of a DLA, ``classifier`` of a DLASeg; ``classifier_name``
            overrides): 'keep' loads it (a mismatch is an error), 'drop' leaves the model's freshly initialised one,
            'if_mismatched' drops it only when it is absent or has another number of classes (fine-tuning).
        adapt_in_chans: Adapt a 3-channel first conv (``first_conv``) to the model's input channels.

    ``path_or_state_dict`` may name a registry file, ``'dlap://dla34.in1k'`` (fetched on first use, see
    :mod:`dla_plugins.weights`); the load then logs one line (``report.weights``).

    Raises:
        CheckpointError: any other mismatch; the message lists every missing, unexpected and mis-shaped key.
        WeightsError: a registry file that cannot be fetched.
    """
    state, report = prepare_state_dict(model, path_or_state_dict, classifier=classifier,
                                       adapt_in_chans=adapt_in_chans, first_conv=first_conv,
                                       classifier_name=classifier_name)
    model.load_state_dict(state, strict=True)
    if report.weights:
        _logger.info('%s', report.weights)
    if report.layout != 'timm':
        _logger.info('%s', report.summary())
    return report
