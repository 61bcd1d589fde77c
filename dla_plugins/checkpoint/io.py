"""Reading checkpoint files: safetensors or ``weights_only`` torch pickles, unwrapped to a flat state_dict."""
import os
import zipfile
from typing import Dict, Mapping, Union

import torch

__all__ = ['CheckpointError', 'StateDict', 'read_state_dict', 'unwrap_state_dict']

StateDict = Dict[str, torch.Tensor]
_WRAPPER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema')


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not match the model; the message lists every offending key."""


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
    return unwrap_state_dict(obj, path)


def unwrap_state_dict(obj: object, source: str) -> StateDict:
    """Find the state_dict inside a checkpoint container and strip a DDP 'module.' prefix."""
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
