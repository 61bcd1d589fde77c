"""Strict loads inside hosts that load non-strictly. detectron2's checkpointer and mmengine's ``load_checkpoint`` load
with ``strict=False``: a file whose DLA does not fit (another variant, flavour, node type or norm) only produces a list
of "not found" keys and training goes on from random weights. :func:`guard_load` makes a module refuse that: every
one of its tensors must come from any checkpoint loaded into the model holding it (``all_or_nothing``: all or none,
for necks a backbone-only file leaves fresh). A registry file being loaded (:func:`note_registry_file`, set by the
hosts' ``dlap://`` paths) is named in the error, and its one log line is written after the load with the true count.
"""
import functools
import logging
from typing import Any, Dict, List, Mapping, Sequence

import torch.nn as nn

from ..files import CheckpointError, named_files

__all__ = ['guard_load', 'note_registry_file', 'pending_file']

_PENDING: Dict[str, Any] = {}


def note_registry_file(name: str, variant: str, network: Mapping[str, Any], skipped: Sequence[str],
                       logger: logging.Logger) -> None:
    """Registry file ``name`` (its DLA ``variant``, DLASeg ``network``) is about to be loaded by a host: the next
    guarded load names it in errors and logs its line to ``logger``."""
    _PENDING.clear()
    _PENDING.update(name=name, variant=variant, network=dict(network), skipped=list(skipped), logger=logger)


def pending_file() -> Dict[str, Any]:
    """The network arguments of the registry file about to be loaded (empty when none is pending)."""
    return dict(_PENDING.get('network', {}))


def _describe_file() -> str:
    if not _PENDING:
        return ''
    net = _PENDING['network']
    what = 'DLASeg(' + ', '.join(f'{k}={v!r}' for k, v in net.items()) + ')' if net else 'DLA'
    return f"; the file is weights {_PENDING['name']}: {what} of {_PENDING['variant']}"


def _check(module: nn.Module, state_dict: Mapping[str, Any], prefix: str, local_metadata: Any, strict: bool,
           missing_keys: List[str], unexpected_keys: List[str], error_msgs: List[str], *, what: str,
           all_or_nothing: bool) -> None:
    own = {k: v for k, v in module.state_dict().items() if not k.endswith('num_batches_tracked')}
    absent = [k for k in own if prefix + k not in state_dict]
    misshaped = [f'{k}: checkpoint {tuple(state_dict[prefix + k].shape)} vs model {tuple(v.shape)}'
                 for k, v in own.items() if prefix + k in state_dict
                 and tuple(getattr(state_dict[prefix + k], 'shape', ())) != tuple(v.shape)]
    if all_or_nothing and len(absent) == len(own):
        return
    variant = getattr(module, 'variant', None)
    name = f'{what}({variant})' if isinstance(variant, str) else what
    if absent or misshaped:
        lines = [f"checkpoint does not fit {name} at '{prefix}': {len(absent) + len(misshaped)} of its {len(own)} "
                 f'tensors are missing or mis-shaped in the checkpoint{_describe_file()}']
        lines += [f'  missing: {k}' for k in absent[:20]] + [f'  mis-shaped: {m}' for m in misshaped[:20]]
        if len(absent) > 20 or len(misshaped) > 20:
            lines.append('  ...')
        _PENDING.clear()
        raise CheckpointError('\n'.join(lines))
    if _PENDING and not all_or_nothing:  # the DLA itself loaded whole: the registry file's one line, true counts
        _PENDING['logger'].info(named_files().load_line(_PENDING['name'], len(own), _PENDING['skipped'], name))
        _PENDING.clear()  # a later load (another file) must not be described as this one


def guard_load(module: nn.Module, what: str, all_or_nothing: bool = False) -> nn.Module:
    """Make every load of a checkpoint into a model holding ``module`` fail unless all of ``module``'s tensors (BN
    counters aside) come from it, at the right shapes (``all_or_nothing``: or none of them). Returns ``module``."""
    module.register_load_state_dict_pre_hook(functools.partial(_check, what=what, all_or_nothing=all_or_nothing))
    return module

