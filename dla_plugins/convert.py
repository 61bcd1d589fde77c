"""One conversion path: any recognised DLA checkpoint -> our model's state_dict, or a host's key layout, with the
exact host options that build the model which loads it.

:func:`convert` is the library function ``dla-plugins convert``, ``python -m d2_ext.convert`` and timm's pretrained
filter all stand on; :func:`convert_checkpoint` writes its result atomically and verifies it.
"""
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

import torch

from .checkpoint.detect import convert_state_dict, detect_layout
from .checkpoint.hosts import to_host
from .checkpoint.load import LoadReport, load_checkpoint
from .factory import create_dla
from .files import CheckpointError, StateDict, read_state_dict, save_atomic, unwrap_state_dict
from .seg import DLASeg
from .variants import VARIANTS, resolve_variant

__all__ = ['TARGETS', 'D2_PREFIXES', 'Converted', 'infer_variant', 'convert', 'convert_checkpoint', 'format_options']

TARGETS = ('core', 'detectron2', 'mmseg')
# Where detectron2's builders keep the DLA: the plain backbone at ``backbone.dla.``, FPN and DLA-Up backbones wrap it.
D2_PREFIXES = {'build_dlap_backbone': 'backbone.dla.', 'build_dlap_fpn_backbone': 'backbone.bottom_up.dla.',
               'build_dlap_retinanet_fpn_backbone': 'backbone.bottom_up.dla.',
               'build_dlap_up_backbone': 'backbone.bottom_up.dla.'}


@dataclass
class Converted:
    """What :func:`convert` returns (it unpacks as ``state, report, host_options``).

    Attributes:
        state: The converted tensors, keyed for ``target``.
        report: The strict load into the core model (layout, renamed and skipped keys).
        host_options: What builds the model that loads ``state``: for 'core' the ``create_dla``/``DLASeg`` call
            (``{'builder': ..., 'variant': ..., 'kwargs': {...}}``), for 'detectron2' the config options as a flat
            ``[KEY, VALUE, ...]`` list (``cfg.merge_from_list``), for 'mmseg' the ``model`` config dict parts.
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

    def checkpoint(self) -> Dict[str, Any]:
        """The object the target's loader reads: detectron2's ``{'model': ..., '__author__': 'dla-plugins',
        'matching_heuristics': False}`` (loaded by exact names), mmseg's ``{'state_dict': ..., 'meta': {...}}``;
        for 'core' the state itself."""
        if self.target == 'detectron2':
            return {'model': self.state, '__author__': 'dla-plugins', 'matching_heuristics': False}
        if self.target == 'mmseg':
            return {'state_dict': self.state, 'meta': {'source_layout': self.report.layout, 'variant': self.variant}}
        return self.state


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

    if network:
        return DLASeg(variant, **network)
    return create_dla(variant, num_classes=classes, in_chans=in_chans)


def _d2_options(variant: str, network: Dict[str, Any], builder: str) -> List[str]:
    norm = 'GN' if network.get('norm_layer') == 'gn' else 'FrozenBN'
    opts = ['MODEL.BACKBONE.NAME', builder, 'MODEL.DLAP.ARCH', variant, 'MODEL.DLAP.NORM', norm]
    if builder != 'build_dlap_up_backbone':
        return opts
    first = network['down_ratio'].bit_length() - 1
    onoff = {None: 'auto', True: 'on', False: 'off'}
    return opts + ['MODEL.DLAP.OUT_FEATURES', '[{}]'.format(','.join(f"'level{i}'" for i in range(first, 6))),
                   'MODEL.DLAP.NECK.FLAVOR', network['flavor'], 'MODEL.DLAP.NECK.NODE_TYPE', network['node_type'],
                   'MODEL.DLAP.NECK.NORM', norm, 'MODEL.DLAP.NECK.OUT_CHANNELS', '0',
                   'MODEL.DLAP.NECK.BIAS', onoff[network.get('bias')],
                   'MODEL.DLAP.NECK.NODE_KERNEL', str(network.get('node_kernel', 3)),
                   'MODEL.DLAP.NECK.FINAL_IDA', onoff[network.get('final_ida')]]


def _mmseg_options(variant: str, network: Dict[str, Any], classes: int) -> Dict[str, Any]:

    norm_cfg = dict(type='GN', num_groups=32) if network.get('norm_layer') == 'gn' else dict(type='BN')
    first = network['down_ratio'].bit_length() - 1 if network else 2
    levels = list(range(first, 6))
    backbone = dict(type='DLA', arch=variant, out_indices=tuple(levels), output_stride=32, norm_cfg=norm_cfg)
    if not network:
        return dict(backbone=backbone)
    chans = resolve_variant(variant).channels
    head = dict(type='DLAUpHead', in_channels=[chans[i] for i in levels], strides=[2 ** i for i in levels],
                num_classes=classes or 'YOUR_NUM_CLASSES', flavor=network['flavor'], node_type=network['node_type'],
                bias=network.get('bias'), node_kernel=network.get('node_kernel', 3),
                final_ida=network.get('final_ida'), norm_cfg=norm_cfg)
    return dict(backbone=backbone, decode_head=head)


def convert(src: Union[str, os.PathLike, Mapping[str, torch.Tensor]], target: str = 'core',
            variant: Optional[str] = None, prefix: Optional[str] = None) -> Converted:
    """Convert a checkpoint of any recognised layout (.pth/.pt/.bin/.safetensors or a state_dict) for ``target``.

    The layout (see :data:`~dla_plugins.checkpoint.FAMILIES`) is recognised by rule and loaded strictly into our
    model of that network: a DLA, or the DLASeg its DLA-Up describes. ``variant`` is inferred from the shapes unless
    given. For 'detectron2' the DLA goes under the prefix of the builder that fits the network
    (:data:`D2_PREFIXES`: the DLA-Up backbone for whole-network files, else the FPN one); ``prefix='backbone.dla.'``
    targets the plain ``build_dlap_backbone``. Task heads, ImageNet classifiers of dense files and (detectron2)
    BatchNorm counters are dropped.

    Returns:
        :class:`Converted` (``state, report, host_options = convert(...)``).
    """
    if target not in TARGETS:
        raise ValueError(f'target: unknown target {target!r}; allowed: {list(TARGETS)}')
    if prefix is not None and target != 'detectron2':
        raise ValueError(f"prefix: only for target='detectron2', got target={target!r}")
    if prefix is not None and prefix not in set(D2_PREFIXES.values()):
        raise ValueError(f'prefix: unknown detectron2 prefix {prefix!r}; allowed: {sorted(set(D2_PREFIXES.values()))}')
    state = (unwrap_state_dict(src, 'the given mapping') if isinstance(src, Mapping) else read_state_dict(src))
    layout = detect_layout(state)
    network = layout.model_kwargs(state)
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
    if target == 'core':
        options: Union[Dict[str, Any], List[str]] = dict(
            builder='DLASeg' if network else 'create_dla', variant=variant,
            kwargs=dict(network) if network else dict(num_classes=classes))
        return Converted(ours, report, options, variant, network, classes, target)
    if target == 'detectron2':
        if prefix == D2_PREFIXES['build_dlap_backbone']:
            builder = 'build_dlap_backbone'
        else:
            builder = 'build_dlap_up_backbone' if network else 'build_dlap_fpn_backbone'
        host = to_host(ours, 'detectron2', backbone_prefix=D2_PREFIXES[builder], dropped=report.dropped_classifier)
        return Converted(host, report, _d2_options(variant, network, builder), variant, network, classes, target)
    host = to_host(ours, 'mmseg', dropped=report.dropped_classifier)
    return Converted(host, report, _mmseg_options(variant, network, classes), variant, network, classes, target)


def format_options(converted: Converted) -> str:
    """The host options of ``converted`` as the user types them: a Python call, yaml opts, or a config dict."""
    import shlex

    opts = converted.host_options
    if converted.target == 'detectron2':
        return ' '.join(shlex.quote(o) for o in opts)
    if converted.target == 'mmseg':
        return 'model = dict(\n' + ''.join(f'    {k}={v!r},\n' for k, v in opts.items()) + ')'
    args = ', '.join(f'{k}={v!r}' for k, v in opts['kwargs'].items())
    return f"{opts['builder']}({opts['variant']!r}{', ' + args if args else ''})"


def convert_checkpoint(src: str, dst: str, variant: Optional[str] = None, to: str = 'core',
                       prefix: Optional[str] = None, progress: bool = False) -> Converted:
    """:func:`convert` ``src`` and write it to ``dst`` atomically: 'core' as safetensors (re-read, loaded strictly into
    a fresh model and compared tensor by tensor), a host as the .pth its loader reads (:meth:`Converted.checkpoint`)."""
    from tqdm.auto import tqdm

    ext = '.safetensors' if to == 'core' else '.pth'
    if to in TARGETS and not dst.endswith(ext):
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
