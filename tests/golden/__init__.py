"""Golden fixtures produced by running reference implementations (ucbdrive/dla, CenterNet, FairMOT, CenterTrack,
mmdetection3d, CenterNet2, SMOKE, monodle, KM3D, TraDeS, CenterFusion): key/shape manifests, seeds, inputs and
reference outputs — never weights or code.

A fixture ``data/<name>.json`` is a manifest::

    {"name": ..., "family": ..., "reference": {"repo", "commit", "path", "build"}, "seed": int,
     "container": {"state_dict_key": "state_dict" | null, "extra": {...}},
     "tensors": [[key, shape, dtype], ...],          # keys exactly as saved by the reference (prefixes included)
     "input": {"shape": [...], "seed": int}, "outputs": {name: shape, ...}, "notes": "..."}

and ``data/<name>.safetensors`` holds the reference outputs. The weights are synthesised from the manifest by
:func:`synth_tensor` (a function of key, shape and seed only), so the generator (``generate.py``) and the tests build
bit-identical checkpoints without storing them.
"""
import json
import os
import zlib
from typing import Any, Dict, List, Tuple

import torch

DATA = os.path.join(os.path.dirname(__file__), 'data')
__all__ = ['DATA', 'synth_tensor', 'synth_state_dict', 'make_input', 'wrap_container', 'load_manifest',
           'load_outputs', 'write_checkpoint', 'fixture_names', 'tolerance', 'extra_input_hook', 'seeded_maps']

_DTYPES = {'float32': torch.float32, 'float64': torch.float64, 'int64': torch.int64, 'float16': torch.float16}


def synth_tensor(key: str, shape: List[int], dtype: str, seed: int) -> torch.Tensor:
    """A deterministic tensor for ``key``: norm statistics in their valid ranges, conv weights scaled by fan-in."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    shape = list(shape)
    if dtype == 'int64':
        return torch.zeros(shape, dtype=torch.int64)
    leaf = key.rsplit('.', 1)[-1]
    if leaf == 'running_var':
        t = torch.rand(shape, generator=g) * 0.5 + 0.75
    elif leaf == 'running_mean':
        t = torch.randn(shape, generator=g) * 0.1
    elif leaf == 'weight' and len(shape) == 1:  # norm scale
        t = 1.0 + 0.1 * torch.randn(shape, generator=g)
    elif leaf == 'bias' or len(shape) <= 1:
        t = 0.1 * torch.randn(shape, generator=g)
    else:
        fan_in = 1
        for s in shape[1:]:
            fan_in *= s
        t = torch.randn(shape, generator=g) * (1.0 / max(fan_in, 1)) ** 0.5
    return t.to(_DTYPES[dtype])


def synth_state_dict(manifest: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The reference state_dict of a manifest, keys in the reference's order."""
    return {k: synth_tensor(k, shape, dtype, manifest['seed']) for k, shape, dtype in manifest['tensors']}


def make_input(manifest: Dict[str, Any]) -> torch.Tensor:
    spec = manifest['input']
    return torch.randn(spec['shape'], generator=torch.Generator().manual_seed(spec['seed']))


def wrap_container(manifest: Dict[str, Any], state: Dict[str, torch.Tensor]) -> Any:
    """Put ``state`` into the reference's real container (e.g. CenterNet's ``{'epoch', 'state_dict'}``)."""
    spec = manifest.get('container') or {}
    key = spec.get('state_dict_key')
    if not key:
        return state
    return {**spec.get('extra', {}), key: state}


def write_checkpoint(manifest: Dict[str, Any], path: str) -> str:
    """Write the manifest's checkpoint, in its real container, to ``path`` (torch.save)."""
    torch.save(wrap_container(manifest, synth_state_dict(manifest)), path)
    return path


def fixture_names() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(DATA) if f.endswith('.json'))


def load_manifest(name: str) -> Dict[str, Any]:
    with open(os.path.join(DATA, f'{name}.json')) as f:
        return json.load(f)


def load_outputs(name: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(os.path.join(DATA, f'{name}.safetensors'))


def tolerance(ref: torch.Tensor, deformable: bool = False) -> Tuple[float, float]:
    """(allowed max |diff|, scale): 1e-5 x max(1, max |ref|) in fp32, 1e-4 x for deformable paths."""
    scale = max(1.0, ref.abs().max().item())
    return (1e-4 if deformable else 1e-5) * scale, scale


def extra_input_hook(base_layer: torch.nn.Module, state: Dict[str, torch.Tensor], manifest: Dict[str, Any]):
    """CenterTrack adds conv-BN-ReLU of the previous frame and heatmap to the stem output; those extra input convs
    are not part of DLA (skipped by conversion), so a test adds their contribution with the checkpoint's own weights
    through a forward hook on ``base_layer`` (returned; None when the fixture has no extra inputs)."""
    import torch.nn.functional as F

    extra = manifest['input'].get('extra', {})
    if not extra:
        return None

    def branch(name: str, x: torch.Tensor) -> torch.Tensor:
        p = f'base.{name}.'
        y = F.conv2d(x, state[p + '0.weight'], padding=3)
        y = F.batch_norm(y, state[p + '1.running_mean'], state[p + '1.running_var'], state[p + '1.weight'],
                         state[p + '1.bias'])
        return F.relu(y)

    adds = [branch(f'{k}_layer', make_input({'input': spec})) for k, spec in extra.items()]
    return base_layer.register_forward_hook(lambda m, i, out: out + sum(adds))


def seeded_maps(spec: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """Raw CenterNet head outputs drawn from ``spec`` = {'seed', 'shape': [batch, classes, height, width],
    'plateaus': bool, 'hm_scale': float}: ``hm`` logits ~ hm_scale x N(0, 1) (hm_scale 1 by default; times 2 and
    rounded when ``plateaus``: many equal scores), ``wh`` = 16 x U(0, 1), ``reg`` = U(0, 1). Used by the ctdet
    generator and its tests alike."""
    g = torch.Generator().manual_seed(spec['seed'])
    b, c, h, w = spec['shape']
    hm = torch.randn(b, c, h, w, generator=g) * spec.get('hm_scale', 1.0)
    if spec.get('plateaus'):
        hm = (hm * 2).round()
    return {'hm': hm, 'wh': 16 * torch.rand(b, 2, h, w, generator=g), 'reg': torch.rand(b, 2, h, w, generator=g)}
