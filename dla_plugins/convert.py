"""One conversion path: any recognised DLA checkpoint -> our model's state_dict, or a host's key layout, with the
exact host options that build the model which loads it.

:func:`convert` is the library function ``dla-plugins convert``, ``python -m d2_ext.convert`` and timm's pretrained
filter all stand on; :func:`convert_checkpoint` writes its result atomically and verifies it.
"""
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from filelock import FileLock

from .checkpoint.detect import convert_state_dict, detect_layout
from .checkpoint.hosts import host_layout, host_names
from .checkpoint.load import LoadReport, load_checkpoint
from .detector import CenterNet, ctdet_heads
from .factory import create_dla
from .files import CheckpointError, StateDict, read_state_dict, save_atomic, unwrap_state_dict
from .seg import DLASeg
from .variants import VARIANTS
from .weights import cache_record, fetch

__all__ = ['targets', 'Converted', 'infer_variant', 'convert', 'convert_checkpoint', 'format_options',
           'CONVERTER_VERSION', 'HostFile', 'host_file']

CONVERTER_VERSION = 1
"""The version of what :func:`convert` writes; a cached host file of another version is converted again."""


def targets() -> List[str]:
    """``'core'`` and every host layout (:func:`~dla_plugins.checkpoint.hosts.host_names`)."""
    return ['core'] + host_names()


@dataclass
class Converted:
    """What :func:`convert` returns (it unpacks as ``state, report, host_options``).

    Attributes:
        state: The converted tensors, keyed for ``target``.
        report: The strict load into the core model (layout, renamed and skipped keys).
        host_options: What builds the model that loads ``state``: for 'core' the ``create_dla``/``DLASeg`` call
            (``{'builder': ..., 'variant': ..., 'kwargs': {...}}``), for a host what its layout's
            :meth:`~dla_plugins.checkpoint.hosts.HostLayout.options` writes.
        variant: The DLA variant; ``network``: DLASeg arguments of a whole-network file (empty: a plain DLA).
    """

    state: StateDict
    report: LoadReport
    host_options: Union[Dict[str, Any], List[str]]
    variant: str
    network: Dict[str, Any]
    num_classes: int
    target: str

    def __iter__(self):
        return iter((self.state, self.report, self.host_options))

    def checkpoint(self) -> Any:
        """The object the target's loader reads (the host layout's :meth:`HostLayout.checkpoint`); for 'core' the
        state itself."""
        if self.target == 'core':
            return self.state
        return host_layout(self.target).checkpoint(self.state, self.report.layout, self.variant)


def infer_variant(state: Mapping[str, torch.Tensor], norm_layer: Optional[str] = None) -> str:
    """The one variant whose backbone accepts ``state`` (any recognised layout, converted by rule).

    Raises:
        CheckpointError: no variant or several variants match.
    """
    matches = []
    for name in VARIANTS:
        with torch.device('meta'):  # shapes only: no memory, no weight init cost
            model = create_dla(name, num_classes=0, norm_layer=norm_layer)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # copying into meta tensors is a (warned) no-op
                load_checkpoint(model, state, classifier='drop', adapt_in_chans=True)
        except CheckpointError:
            continue
        matches.append(name)
    if len(matches) != 1:
        what = 'no DLA variant' if not matches else f'several variants ({", ".join(matches)})'
        raise CheckpointError(f'checkpoint: {what} match its keys and shapes; pass --variant')
    return matches[0]


def _core_model(variant: str, network: Dict[str, Any], classes: int, in_chans: int) -> torch.nn.Module:
    if 'heads' in network:  # a ctdet detector (see ctdet_heads)
        return CenterNet(variant, **network)
    if network:
        return DLASeg(variant, **network)
    return create_dla(variant, num_classes=classes, in_chans=in_chans)


def convert(src: Union[str, os.PathLike, Mapping[str, torch.Tensor]], target: str = 'core',
            variant: Optional[str] = None, prefix: Optional[str] = None) -> Converted:
    """Convert a checkpoint of any recognised layout (.pth/.pt/.bin/.safetensors or a state_dict) for ``target``.

    The layout (see :data:`~dla_plugins.checkpoint.FAMILIES`) is recognised by rule and loaded strictly into our
    model of that network: a DLA, or the DLASeg its DLA-Up describes. ``variant`` is inferred from the shapes unless
    given. For a host target (:func:`targets`) its :class:`~dla_plugins.checkpoint.hosts.HostLayout` renames the keys
    (``prefix`` picks another place for the DLA where the host has several, e.g. detectron2's plain backbone) and
    writes the options; task heads and ImageNet classifiers of dense files are dropped, as are what the host omits.

    Returns:
        :class:`Converted` (``state, report, host_options = convert(...)``).
    """
    host = None if target == 'core' else host_layout(target)
    if prefix is not None and (host is None or not host.prefixes):
        with_prefix = [n for n in host_names() if host_layout(n).prefixes]
        raise ValueError(f'prefix: only for target={" or ".join(repr(n) for n in with_prefix) or "none"}, '
                         f'got target={target!r}')
    if prefix is not None and prefix not in host.prefixes:
        raise ValueError(f'prefix: unknown {target} prefix {prefix!r}; allowed: {sorted(host.prefixes)}')
    state = (unwrap_state_dict(src, 'the given mapping') if isinstance(src, Mapping) else read_state_dict(src))
    layout = detect_layout(state)
    network = layout.model_kwargs(state)
    heads = ctdet_heads(state) if network else {}
    if heads:  # CenterNet's ctdet files keep their heads, which replace DLASeg's classifier
        network = {**{k: v for k, v in network.items() if k != 'num_classes'}, **heads}
    norm = network.get('norm_layer')
    variant = variant or infer_variant(state, norm)
    if network:
        model = _core_model(variant, network, 0, 3)
    else:  # a classifier file: its classifier (none for a dense file's backbone) and input channels, after conversion
        with torch.device('meta'):
            ours = convert_state_dict(state, _core_model(variant, {}, 0, 3)).state
        fc, stem = ours.get('fc.weight'), ours.get('base_layer.0.weight')
        model = _core_model(variant, {}, int(fc.shape[0]) if fc is not None else 0,
                            int(stem.shape[1]) if stem is not None else 3)
    report = load_checkpoint(model, state)
    report.variant = variant
    classes = network.get('num_classes', getattr(model, 'num_classes', 0))
    ours = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if host is None:
        builder = ('CenterNet' if 'heads' in network else 'DLASeg') if network else 'create_dla'
        options: Any = dict(builder=builder, variant=variant,
                            kwargs=dict(network) if network else dict(num_classes=classes))
        return Converted(ours, report, options, variant, network, classes, target)
    state = host.to_host(ours, network, prefix, dropped=report.dropped_classifier)
    options = host.options(variant, network, classes, prefix)
    return Converted(state, report, options, variant, network, classes, target)


def format_options(converted: Converted) -> str:
    """The host options of ``converted`` as the user types them: a Python call, or the host layout's form."""
    opts = converted.host_options
    if converted.target != 'core':
        return host_layout(converted.target).format_options(opts)
    args = ', '.join(f'{k}={v!r}' for k, v in opts['kwargs'].items())
    return f"{opts['builder']}({opts['variant']!r}{', ' + args if args else ''})"


def convert_checkpoint(src: str, dst: str, variant: Optional[str] = None, to: str = 'core',
                       prefix: Optional[str] = None, progress: bool = False) -> Converted:
    """:func:`convert` ``src`` and write it to ``dst`` atomically: 'core' as safetensors (re-read, loaded strictly into
    a fresh model and compared tensor by tensor), a host as the .pth its loader reads (:meth:`Converted.checkpoint`)."""
    from tqdm.auto import tqdm

    ext = '.safetensors' if to == 'core' else '.pth'
    if to in targets() and not dst.endswith(ext):
        raise ValueError(f'DST: must end with {ext} for --to {to}, got {dst!r}')
    bar = tqdm(total=2, desc='convert', disable=not progress, leave=False)
    out = convert(src, to, variant, prefix)
    bar.update()
    if to == 'core':
        meta = {'format': 'pt', 'variant': out.variant, 'source_layout': out.report.layout,
                'network': json.dumps(out.network)}
        from safetensors.torch import save_file

        tmp = os.path.join(os.path.dirname(dst) or '.', f'.{os.path.basename(dst)[:-12]}.tmp.safetensors')
        save_file(out.state, tmp, metadata=meta)
        check = _core_model(out.variant, out.network, out.num_classes, 3)
        load_checkpoint(check, read_state_dict(tmp))
        for k, v in check.state_dict().items():
            if not torch.equal(v, out.state[k]):
                os.remove(tmp)
                raise CheckpointError(f'convert: {k} differs after the round trip')
        os.replace(tmp, dst)
    else:
        save_atomic(out.checkpoint(), dst)
    bar.update()
    bar.close()
    return out


@dataclass
class HostFile:
    """A registry file converted for a host (:func:`host_file`): the file and what the load line needs."""

    path: Path
    name: str
    variant: str
    network: Dict[str, Any]
    skipped: List[str]


def host_file(name: str, host: str) -> HostFile:
    """Registry file ``name`` converted for ``host`` once per (file sha256, :data:`CONVERTER_VERSION`): cached beside
    the fetched file as ``<host>-<sha256[:16]>-v<N>.pth`` (the layout's
    :meth:`~dla_plugins.checkpoint.hosts.HostLayout.cached_checkpoint`) with a ``.json`` of its variant, network and
    skipped keys; other conversions of it for ``host`` (stale) are removed. Ranks that race convert once (a lock)."""
    src = Path(fetch(name))
    stem = src.parent / f'{host}-{cache_record(name).sha256[:16]}-v{CONVERTER_VERSION}'
    dst, info = stem.with_suffix('.pth'), stem.with_suffix('.json')
    with FileLock(str(src.parent / '.convert.lock')):
        if not (dst.is_file() and info.is_file()):
            out = convert(str(src), host)
            layout = host_layout(host)
            save_atomic(layout.cached_checkpoint(out.state, out.report.layout, out.variant), dst)
            skipped = sorted(out.report.skipped) + out.report.dropped_classifier
            save_atomic(json.dumps(dict(variant=out.variant, network=out.network, skipped=skipped)).encode(), info)
        for stale in src.parent.glob(f'{host}-*'):
            if stale not in (dst, info) and stale.suffix in ('.pth', '.json'):
                stale.unlink()
        meta = json.loads(info.read_text())
    return HostFile(dst, name, meta['variant'], meta['network'], meta['skipped'])
