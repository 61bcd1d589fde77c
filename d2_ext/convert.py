"""Convert any recognised DLA checkpoint (timm, ucbdrive classifier or DLASeg, CenterNet/FairMOT/CenterTrack,
mmdetection3d, CenterNet2) into a detectron2 checkpoint for ``MODEL.WEIGHTS``.

``python -m d2_ext.convert SRC DST.pth --arch dla34`` writes ``{'model': {key: tensor}, '__author__': 'dla-plugins',
'matching_heuristics': False}``: ``DetectionCheckpointer`` then loads it by exact key names. The backbone goes under
``backbone.bottom_up.dla.`` (FPN and DLA-Up backbones; ``--prefix backbone.dla.`` for ``build_dlap_backbone``); a
checkpoint with a DLA-Up (dense families) also gives ``backbone.dla_up.*`` for ``build_dlap_up_backbone`` with the
printed ``MODEL.DLAP`` settings (``--no-neck`` leaves it out). Task heads, ImageNet classifiers and the BatchNorm
``num_batches_tracked`` counters are dropped, so the file loads with no missing or unexpected backbone keys into
FrozenBN, BN and SyncBN models alike.
"""
import argparse
import os
import shlex
from typing import Dict, List, Tuple, Union

import torch

from dla_plugins import DLASeg, create_dla, load_checkpoint, read_state_dict
from dla_plugins.checkpoint import LoadReport, detect_layout
from dla_plugins.checkpoint.hosts import to_host

__all__ = ['PREFIX_NECK', 'PREFIX_PLAIN', 'PREFIX_DLA_UP', 'convert_to_d2', 'd2_settings', 'main']

PREFIX_NECK = 'backbone.bottom_up.dla.'
PREFIX_PLAIN = 'backbone.dla.'
PREFIX_DLA_UP = 'backbone.dla_up.'


def _load_core(state: Dict[str, torch.Tensor], arch: str, neck: bool) -> Tuple[torch.nn.Module, LoadReport]:
    kwargs = detect_layout(state).model_kwargs(state)
    if kwargs and neck:
        model = DLASeg(arch, **{**kwargs, 'num_classes': 0})
    else:
        model = create_dla(arch, num_classes=0, norm_layer=kwargs.get('norm_layer'))
    return model, load_checkpoint(model, state, drop_classifier=True)


def d2_settings(report: LoadReport) -> List[str]:
    """The ``MODEL.DLAP`` options (as ``KEY VALUE`` opts) that build the converted network's backbone and neck."""
    kw = report.model_kwargs
    if not kw or kw.get('node_kernel', 3) != 3:  # CenterNet2's DLAUP (1x1 nodes) has no detectron2 neck here
        return []
    first = kw['down_ratio'].bit_length() - 1
    norm = 'GN' if kw.get('norm_layer') == 'gn' else 'FrozenBN'
    return ['MODEL.BACKBONE.NAME', 'build_dlap_up_backbone',
            'MODEL.DLAP.OUT_FEATURES', '[{}]'.format(','.join(f"'level{i}'" for i in range(first, 6))),
            'MODEL.DLAP.NORM', norm,
            'MODEL.DLAP.NECK.FLAVOR', kw['flavor'], 'MODEL.DLAP.NECK.NODE_TYPE', kw['node_type'],
            'MODEL.DLAP.NECK.NORM', norm, 'MODEL.DLAP.NECK.OUT_CHANNELS', '0',
            'MODEL.DLAP.NECK.BIAS', {None: 'auto', True: 'on', False: 'off'}[kw.get('bias')]]


def convert_to_d2(src: Union[str, os.PathLike, Dict[str, torch.Tensor]], arch: str = 'dla34',
                  prefix: str = PREFIX_NECK, neck: bool = True, return_report: bool = False):
    """Load ``src`` strictly into the core model of its layout (every foreign layout converted by rule) and return
    the detectron2 checkpoint dict (and the load report with ``return_report``)."""
    state = src if isinstance(src, dict) else read_state_dict(src)
    model, report = _load_core(state, arch, neck)
    weights = to_host(model.state_dict(), 'detectron2', backbone_prefix=prefix)
    ckpt = {'model': weights, '__author__': 'dla-plugins', 'matching_heuristics': False}
    return (ckpt, report) if return_report else ckpt


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description='Convert a DLA checkpoint of any recognised layout for detectron2.')
    p.add_argument('src', help='checkpoint (.pth/.pt/.bin or .safetensors): timm, ucbdrive, CenterNet, FairMOT, '
                               'CenterTrack, mmdetection3d or CenterNet2 layout')
    p.add_argument('dst', help='output .pth for MODEL.WEIGHTS')
    p.add_argument('--arch', default='dla34', help='DLA variant of the checkpoint (default: dla34)')
    p.add_argument('--prefix', default=PREFIX_NECK,
                   help=f'backbone key prefix: {PREFIX_NECK!r} (FPN, DLA-Up; default) or {PREFIX_PLAIN!r} (plain)')
    p.add_argument('--no-neck', action='store_true', help='backbone only, even if the checkpoint has a DLA-Up')
    a = p.parse_args(argv)
    ckpt, report = convert_to_d2(a.src, a.arch, a.prefix, neck=not a.no_neck, return_report=True)
    torch.save(ckpt, a.dst)
    print(report.summary())
    print(f'wrote {a.dst}: {len(ckpt["model"])} tensors ({a.arch}).')
    opts = d2_settings(report) if not a.no_neck else []
    if opts:
        print('build it with: ' + ' '.join(shlex.quote(o) for o in opts))
    else:
        print('Use it with INPUT.FORMAT RGB and the ImageNet PIXEL_MEAN/STD of configs/detectron2/Base-DLA.yaml.')


if __name__ == '__main__':
    main()
