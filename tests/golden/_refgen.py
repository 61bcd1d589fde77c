"""Shared helpers of the golden-fixture generators (``generate_*.py``).

The generators import the *reference* code from a checkout outside this repository (passed with ``--ref``), build
the reference model, record its state_dict layout in a manifest, load weights synthesised from that manifest, run it
and store the outputs. Only our own code lives here: a stand-in for the compiled DCNv2 ``DCN`` op (same parameter
names and math, on ``torchvision.ops.deform_conv2d``), a loader that imports reference modules under a private
package name, and the manifest / output writers.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import types
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn
from torch.nn.modules.utils import _pair

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:  # make ``golden`` importable when run as a script
    sys.path.insert(0, os.path.dirname(HERE))

from golden import make_input, synth_state_dict, write_checkpoint  # noqa: E402

_DTYPE_NAMES = {torch.float32: 'float32', torch.float64: 'float64', torch.int64: 'int64', torch.float16: 'float16'}


# --------------------------------------------------------------------------------------------------------------------
# DCNv2 stand-in


class DCNv2(nn.Module):
    """Parameters of DCNv2's ``DCNv2`` (``weight`` [out, in, kh, kw], ``bias`` [out]); modulated deformable conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding, dilation=1,
                 deformable_groups: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        stdv = 1.0 / math.sqrt(in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.bias)

    def forward(self, input, offset, mask):
        from torchvision.ops import deform_conv2d

        # DCNv2's offset layout is (dy, dx) per kernel tap, tap-major, per deformable group: the same as torchvision.
        return deform_conv2d(input, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=mask)


class DCN(DCNv2):
    """DCNv2's ``DCN``: ``conv_offset_mask`` predicts 3*dg*k*k channels; ``o1, o2, m = chunk(out, 3, 1)``,
    ``offset = cat(o1, o2)``, ``mask = sigmoid(m)``, then the modulated deformable conv with ``weight``/``bias``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding, dilation=1,
                 deformable_groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, deformable_groups)
        channels = self.deformable_groups * 3 * self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(self.in_channels, channels, kernel_size=self.kernel_size, stride=self.stride,
                                          padding=self.padding, bias=True)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, input):
        out = self.conv_offset_mask(input)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return super().forward(input, offset, mask)


def dcn_module(name: str) -> types.ModuleType:
    """A module object standing in for DCNv2's ``dcn_v2`` (exports ``DCN`` and ``DCNv2``)."""
    return fake_module(name, DCN=DCN, DCNv2=DCNv2)


# --------------------------------------------------------------------------------------------------------------------
# importing reference code


def fake_module(name: str, path: Optional[str] = None, **attrs: Any) -> types.ModuleType:
    """Register ``name`` in ``sys.modules``: a package searching ``path`` if given, else a plain module."""
    mod = types.ModuleType(name)
    if path is not None:
        mod.__path__ = [path]
    for k, v in attrs.items():
        setattr(mod, k, v)
    sys.modules[name] = mod
    return mod


def placeholder(*_args: Any, **_kwargs: Any):
    raise RuntimeError('not used by the golden generators')


def git_commit(path: str) -> Optional[str]:
    try:
        out = subprocess.run(['git', '-C', path, 'rev-parse', 'HEAD'], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


# --------------------------------------------------------------------------------------------------------------------
# manifests and outputs


def tensor_list(state: Dict[str, torch.Tensor]) -> List[list]:
    return [[k, list(v.shape), _DTYPE_NAMES[v.dtype]] for k, v in state.items()]


def manifest(name: str, family: str, reference: Dict[str, str], seed: int, state: Dict[str, torch.Tensor],
             input_spec: Dict[str, Any], container: Optional[Dict[str, Any]] = None, prefix: str = '',
             notes: str = '') -> Dict[str, Any]:
    """The manifest of a fixture. ``state`` is the reference model's own state_dict; ``prefix`` is what the saved
    file adds to every key (e.g. ``module.`` for a DataParallel model saved without unwrapping)."""
    tensors = tensor_list({prefix + k: v for k, v in state.items()})
    return {'name': name, 'family': family, 'reference': reference, 'seed': seed,
            'container': container or {'state_dict_key': None, 'extra': {}},
            'tensors': tensors, 'input': input_spec, 'outputs': {}, 'notes': notes}


def load_synth(model: nn.Module, man: Dict[str, Any], prefix: str = '') -> None:
    """Strict-load the synthesised weights of ``man`` (keys minus ``prefix``) into ``model``."""
    state = synth_state_dict(man)
    state = {k[len(prefix):]: v for k, v in state.items()}
    model.load_state_dict(state, strict=True)


def extra_input(man: Dict[str, Any], key: str) -> torch.Tensor:
    """An extra input recorded as ``man['input']['extra'][key] = {'shape', 'seed'}`` (drawn like ``make_input``)."""
    return make_input({'input': man['input']['extra'][key]})


def dumps_manifest(man: Dict[str, Any]) -> str:
    """JSON with one line per top-level field and one line per tensor entry."""
    fields = []
    for k, v in man.items():
        if k == 'tensors':
            body = ',\n'.join('  ' + json.dumps(t) for t in v)
            fields.append(f' {json.dumps(k)}: [\n{body}\n ]')
        else:
            fields.append(f' {json.dumps(k)}: {json.dumps(v)}')
    text = '{\n' + ',\n'.join(fields) + '\n}\n'
    assert json.loads(text) == man
    return text


def finish(man: Dict[str, Any], outputs: Dict[str, torch.Tensor], out_dir: str) -> None:
    """Write ``<name>.json`` and ``<name>.safetensors`` (contiguous fp32)."""
    from safetensors.torch import save_file

    outs = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in outputs.items()}
    for k, v in outs.items():
        if not torch.isfinite(v).all():
            raise ValueError(f'{man["name"]}: output {k} is not finite')
    man['outputs'] = {k: list(v.shape) for k, v in outs.items()}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, man['name'] + '.json'), 'w') as f:
        f.write(dumps_manifest(man))
    save_file(outs, os.path.join(out_dir, man['name'] + '.safetensors'))
    summary = ', '.join(f'{k}{tuple(v.shape)} max|.|={v.abs().max().item():.3g}' for k, v in outs.items())
    print(f'{man["name"]}: {len(man["tensors"])} tensors; {summary}')


def roundtrip(man: Dict[str, Any], load: Callable[[str], Dict[str, torch.Tensor]],
              expected: Dict[str, torch.Tensor]) -> None:
    """Write the manifest's checkpoint in its real container, check it with ``torch.load(weights_only=True)``, then
    let ``load(path)`` (the reference's own loading path) build a fresh model from it and return its outputs, which
    must equal ``expected`` exactly."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_checkpoint(man, os.path.join(tmp, man['name'] + '.pth'))
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
        key = (man.get('container') or {}).get('state_dict_key')
        state = ckpt[key] if key else ckpt
        if key:
            extra = man['container'].get('extra', {})
            assert set(ckpt) == set(extra) | {key}, sorted(ckpt)
        got_layout = tensor_list(state)
        assert got_layout == [list(t) for t in man['tensors']], f'{man["name"]}: container layout differs'
        got = load(path)
    for k, v in expected.items():
        if not torch.equal(got[k], v):
            diff = (got[k] - v).abs().max().item()
            raise AssertionError(f'{man["name"]}: round-trip output {k} differs by {diff}')
    print(f'{man["name"]}: round trip through {"{" + key + "}" if key else "bare state_dict"} ok')


def pre_hook_input(module: nn.Module, store: Dict[str, torch.Tensor], name: str):
    """Keep (a copy of) the first positional input of ``module`` under ``store[name]``."""
    def hook(_mod, args):
        store[name] = args[0].detach().clone()
    return module.register_forward_pre_hook(hook)


def hook_output(module: nn.Module, store: Dict[str, torch.Tensor], name: str):
    def hook(_mod, _args, out):
        store[name] = out.detach().clone()
    return module.register_forward_hook(hook)


def remove(handles: Iterable[Any]) -> None:
    for h in handles:
        h.remove()


def describe_ida(ida: nn.Module) -> str:
    """``[j: proj cin->cout kind, up xf; ...; nodes [..]]`` for one IDA-Up module, read off its modules."""
    parts, j = [], 0
    while j == 0 or hasattr(ida, f'proj_{j}'):
        proj, up = getattr(ida, f'proj_{j}', None), getattr(ida, f'up_{j}', None)
        if proj is None:
            parts.append(f'{j}: none')
        else:
            convs = [m for m in proj.modules() if isinstance(m, (nn.Conv2d, DCNv2))]  # a DCN precedes its offsets
            if convs:
                c = convs[0]
                kind = 'DCN' if isinstance(c, DCNv2) else 'conv'
                desc = f'proj {c.in_channels}->{c.out_channels} {kind}{c.kernel_size[0]}x{c.kernel_size[1]}'
            else:
                desc = 'proj Identity'
            f = up.stride[0] if isinstance(up, nn.ConvTranspose2d) else 1
            parts.append(f'{j}: {desc}, up x{f}')
        j += 1
    nodes = [k for k in range(j + 1) if hasattr(ida, f'node_{k}')]
    return f'[{"; ".join(parts)}; nodes {nodes}]'


def describe_ida_stages(dla_up: nn.Module) -> str:
    stages = []
    i = 0
    while hasattr(dla_up, f'ida_{i}'):
        stages.append(f'ida_{i} {describe_ida(getattr(dla_up, f"ida_{i}"))}')
        i += 1
    return 'Stages: ' + ' | '.join(stages) + '.'


def imagenet_fc_only(self, *_args: Any, **_kwargs: Any) -> None:
    """Replaces ``DLA.load_pretrained_model`` of CenterNet-style trunks, which download the ImageNet file, build
    ``self.fc = Conv2d(channels[-1], 1000, 1)`` and load the file into it. Only that effect on the module tree (an
    extra ``base.fc`` saved with every detector trained from ImageNet) is kept; nothing is downloaded."""
    self.fc = nn.Conv2d(self.channels[-1], 1000, kernel_size=1, stride=1, padding=0, bias=True)


def pose_fixture(args, *, name: str, family: str, ref: Dict[str, str], seed: int, build: Callable[[], nn.Module],
                 heads: List[str], input_shape: List[int], notes: str, load: Callable[[nn.Module, str], nn.Module],
                 container: Dict[str, Any], extra_inputs: Optional[Dict[str, List[int]]] = None) -> None:
    """A CenterNet-style detector (``model(x, *extra) -> [{head: map}]``): outputs ``features`` (the input of the
    first head module, i.e. exactly what the heads see) and each head's raw output. ``load(fresh_model, path)`` is
    the reference's own checkpoint loader."""
    model = build()
    spec: Dict[str, Any] = {'shape': input_shape, 'seed': seed + 1}
    if extra_inputs:
        spec['extra'] = {k: {'shape': shp, 'seed': seed + 2 + i} for i, (k, shp) in enumerate(extra_inputs.items())}
    man = manifest(name, family, ref, seed, model.state_dict(), spec, container=container, notes=notes)
    load_synth(model, man)
    model.eval()

    def run(m: nn.Module) -> Dict[str, torch.Tensor]:
        store: Dict[str, torch.Tensor] = {}
        handles = [pre_hook_input(getattr(m, h), store, f'features_{h}') for h in heads]
        xs = [make_input(man)] + [extra_input(man, k) for k in (extra_inputs or {})]
        with torch.no_grad():
            out = m(*xs)
        remove(handles)
        feats = [store[f'features_{h}'] for h in heads]
        assert all(torch.equal(f, feats[0]) for f in feats), 'heads see different inputs'
        z = out[-1]
        assert list(z) == list(heads), (list(z), heads)
        return {'features': feats[0], **{h: z[h] for h in heads}}

    outputs = run(model)

    def from_file(path: str) -> Dict[str, torch.Tensor]:
        fresh = load(build(), path)
        fresh.eval()
        return run(fresh)

    roundtrip(man, from_file, outputs)
    finish(man, outputs, args.out)


def common_args(description: str, default_name: str):
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument('--ref', required=True, help='path of the reference checkout (outside this repository)')
    p.add_argument('--commit', default=None, help='commit of the checkout (default: git rev-parse HEAD in --ref)')
    p.add_argument('--out', default=os.path.join(HERE, 'data'), help='output folder (default: tests/golden/data)')
    p.add_argument('--repo', default=default_name, help='owner/name of the reference repository')
    return p


def reference(args, path: str, build: str) -> Dict[str, str]:
    commit = args.commit or git_commit(args.ref)
    if not commit:
        raise SystemExit('--commit is required when --ref is not a git checkout')
    return {'repo': args.repo, 'commit': commit, 'path': path, 'build': build}


def create_model_fixtures(args, model_py: Any, heads: Dict[str, int], input_shape: List[int], model_py_path: str,
                          specs: List[Tuple[str, str, str, str, int, Callable[[nn.Module], str]]]) -> None:
    """CenterNet-style repositories (CenterNet, FairMOT): one :func:`pose_fixture` per ``(name, family, arch, path,
    seed, notes)``, built by the reference's own ``create_model(arch, heads, head_conv=256)`` and loaded back by its
    own ``load_model``, in the ``{'epoch', 'state_dict'}`` container its ``save_model`` writes."""
    container = {'state_dict_key': 'state_dict', 'extra': {'epoch': 1}}

    def load(fresh, path):
        return model_py.load_model(fresh, path)  # the reference's own loader

    for name, family, arch, path, seed, notes in specs:
        def build(arch=arch):
            return model_py.create_model(arch, dict(heads), 256)

        ref = reference(args, path, f'{model_py_path} create_model({arch!r}, {heads}, head_conv=256)')
        pose_fixture(args, name=name, family=family, ref=ref, seed=seed, build=build, heads=list(heads),
                     input_shape=input_shape, notes=notes(build()), load=load, container=container)
