"""Convert a timm- or ucbdrive-layout ImageNet DLA checkpoint into a detectron2 checkpoint for ``MODEL.WEIGHTS``.

``python -m d2_ext.convert SRC DST.pth --arch dla34`` writes ``{'model': {PREFIX + key: tensor}, '__author__':
'dla-plugins', 'matching_heuristics': False}``: ``DetectionCheckpointer`` then loads it by exact key names. The
default prefix ``backbone.bottom_up.dla.`` fits the FPN and DLA-Up backbones; the plain ``build_dlap_backbone``
needs ``--prefix backbone.dla.``. The classifier and the BatchNorm ``num_batches_tracked`` counters are dropped, so
the file loads with no missing or unexpected backbone keys into FrozenBN, BN and SyncBN models alike.
"""
import argparse
import os
from typing import Dict, Union

import torch

from dla_plugins import create_dla, load_checkpoint, read_state_dict

__all__ = ['PREFIX_NECK', 'PREFIX_PLAIN', 'convert_to_d2', 'main']

PREFIX_NECK = 'backbone.bottom_up.dla.'
PREFIX_PLAIN = 'backbone.dla.'


def convert_to_d2(src: Union[str, os.PathLike, Dict[str, torch.Tensor]], arch: str = 'dla34',
                  prefix: str = PREFIX_NECK) -> dict:
    """Load ``src`` strictly into a headless ``arch`` (ucbdrive layouts are converted by the core) and return the
    detectron2 checkpoint dict."""
    state = src if isinstance(src, dict) else read_state_dict(src)
    model = create_dla(arch, num_classes=0)
    load_checkpoint(model, state, drop_classifier=True)
    weights = {prefix + k: v.detach().clone() for k, v in model.state_dict().items()
               if not k.endswith('num_batches_tracked')}
    return {'model': weights, '__author__': 'dla-plugins', 'matching_heuristics': False}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description='Convert a timm/ucbdrive DLA ImageNet checkpoint for detectron2.')
    p.add_argument('src', help='timm or ucbdrive checkpoint (.pth/.pt/.bin or .safetensors)')
    p.add_argument('dst', help='output .pth for MODEL.WEIGHTS')
    p.add_argument('--arch', default='dla34', help='DLA variant of the checkpoint (default: dla34)')
    p.add_argument('--prefix', default=PREFIX_NECK,
                   help=f'key prefix: {PREFIX_NECK!r} (FPN, DLA-Up; default) or {PREFIX_PLAIN!r} (plain backbone)')
    a = p.parse_args(argv)
    ckpt = convert_to_d2(a.src, a.arch, a.prefix)
    torch.save(ckpt, a.dst)
    print(f'wrote {a.dst}: {len(ckpt["model"])} tensors under {a.prefix!r} ({a.arch}). Use it with INPUT.FORMAT RGB '
          'and the ImageNet PIXEL_MEAN/STD of configs/detectron2/Base-DLA.yaml.')


if __name__ == '__main__':
    main()
