"""``python -m d2_ext.convert SRC DST.pth``: any recognised DLA checkpoint -> a detectron2 ``MODEL.WEIGHTS`` file.

The same conversion as ``dla-plugins convert --to detectron2`` (:func:`dla_plugins.convert.convert`): the
layout is recognised by rule, the variant inferred from the shapes (``--arch`` overrides), the DLA put under the
prefix of the builder that fits the network (the DLA-Up backbone for CenterNet-family/mmdetection3d/DLASeg files,
else the FPN ones; ``--prefix backbone.dla.`` for ``build_dlap_backbone``), and the file written atomically as
``{'model': ..., '__author__': 'dla-plugins', 'matching_heuristics': False}`` so ``DetectionCheckpointer`` loads it by
exact names. The printed ``MODEL.*`` options build the model that loads it with no missing backbone key.
"""
import argparse
import os
from typing import Dict, Mapping, Optional, Union

import torch

from dla_plugins.convert import convert, convert_checkpoint, format_options

from .layout import PREFIX_NECK, PREFIX_PLAIN, PREFIXES

__all__ = ['PREFIX_NECK', 'PREFIX_PLAIN', 'convert_to_d2', 'main']


def convert_to_d2(src: Union[str, os.PathLike, Mapping[str, torch.Tensor]], arch: Optional[str] = None,
                  prefix: Optional[str] = None) -> Dict[str, object]:
    """The detectron2 checkpoint dict of ``src`` (see the module docstring)."""
    return convert(src, 'detectron2', arch, prefix).checkpoint()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog='python -m d2_ext.convert',
                                description='Convert a DLA checkpoint of any recognised layout for detectron2.')
    p.add_argument('src', help='checkpoint (.pth/.pt/.bin or .safetensors): timm, ucbdrive, CenterNet, FairMOT, '
                               'CenterTrack, mmdetection3d or CenterNet2 layout')
    p.add_argument('dst', help='output .pth for MODEL.WEIGHTS')
    p.add_argument('--arch', default=None, help='DLA variant (default: inferred from the shapes)')
    p.add_argument('--prefix', default=None, choices=sorted(set(PREFIXES.values())),
                   help=f'backbone key prefix (default: the one of the builder that fits; {PREFIX_PLAIN!r} for '
                        'build_dlap_backbone)')
    a = p.parse_args(argv)
    out = convert_checkpoint(a.src, a.dst, a.arch, to='detectron2', prefix=a.prefix)
    print(out.report.summary())
    print(f'wrote {a.dst}: {len(out.state)} tensors ({out.variant}).')
    print('Use it with INPUT.FORMAT RGB and the ImageNet PIXEL_MEAN/STD of configs/detectron2/Base-DLA.yaml.')
    print('build it with: ' + format_options(out))


if __name__ == '__main__':
    main()
