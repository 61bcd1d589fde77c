"""Checkpoint conversion: any recognised DLA layout -> our safetensors or a host's key layout, verified strictly.

The library side of ``dla-plugins convert``; the model modules are imported lazily (they import this package).
"""
import json
import warnings
from typing import Dict, Optional, Tuple

import torch

__all__ = ['TARGETS', 'infer_variant', 'convert_checkpoint']


def infer_variant(state: Dict[str, torch.Tensor], norm_layer: Optional[str] = None) -> Tuple[str, int]:
    """Find the one variant whose backbone accepts ``state`` (any recognised layout); returns (variant, classes).

    Raises:
        CheckpointError: no variant or several variants match.
    """
    from ..factory import create_dla
    from ..variants import VARIANTS
    from .io import CheckpointError
    from .load import load_checkpoint

    classes = int(state['fc.weight'].shape[0]) if 'fc.weight' in state else 0
    stem = state.get('base_layer.0.weight')
    matches = []
    for name, v in VARIANTS.items():
        if stem is not None and tuple(stem.shape[:1]) != (v.channels[0],):
            continue
        with torch.device('meta'):  # shapes only: no memory, no weight init cost
            model = create_dla(name, num_classes=classes, in_chans=int(stem.shape[1]) if stem is not None else 3,
                               norm_layer=norm_layer)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # copying into meta tensors is a (warned) no-op
                load_checkpoint(model, state)
        except CheckpointError:
            continue
        matches.append(name)
    if len(matches) != 1:
        what = 'no DLA variant' if not matches else f'several variants ({", ".join(matches)})'
        raise CheckpointError(f'checkpoint: {what} match its keys and shapes; pass --variant')
    return matches[0], classes


TARGETS = ('core', 'detectron2', 'mmseg')


def convert_checkpoint(src: str, dst: str, variant: Optional[str] = None, progress: bool = True,
                       to: str = 'core') -> Dict[str, object]:
    """Convert a checkpoint of any recognised layout (.pth/.pt/.bin/.safetensors) for ``to``, verified strictly.

    The layout (timm, ucbdrive classifier or DLASeg, CenterNet, FairMOT, CenterTrack, mmdetection3d, CenterNet2) is
    recognised by rule and loaded strictly into our model of that network: a DLA, or the DLASeg its DLA-Up
    describes. ``to='core'`` writes that model's state_dict as safetensors, re-reads it, loads it strictly into a
    fresh model and compares every tensor; 'detectron2' and 'mmseg' write a .pth with the hosts' key names.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..factory import create_dla
    from ..seg import DLASeg
    from .detect import detect_layout
    from .hosts import to_host
    from .io import CheckpointError, read_state_dict
    from .load import load_checkpoint

    if to not in TARGETS:
        raise ValueError(f'--to: unknown target {to!r}; allowed: {list(TARGETS)}')
    ext = '.safetensors' if to == 'core' else '.pth'
    if not dst.endswith(ext):
        raise ValueError(f'DST: must end with {ext} for --to {to}, got {dst!r}')
    bar = tqdm(total=4, desc='convert', disable=not progress, leave=False)
    state = read_state_dict(src)
    bar.update()
    seg_kwargs = detect_layout(state).model_kwargs(state)
    classes = int(state['fc.weight'].shape[0]) if 'fc.weight' in state else 0
    in_chans = int(state['base_layer.0.weight'].shape[1]) if 'base_layer.0.weight' in state else 3
    if variant is None:
        variant, classes = infer_variant(state, seg_kwargs.get('norm_layer'))
        if seg_kwargs:
            classes = seg_kwargs['num_classes']

    def build() -> torch.nn.Module:
        if seg_kwargs:
            return DLASeg(variant, **seg_kwargs)
        return create_dla(variant, num_classes=classes, in_chans=in_chans)

    model = build()
    report = load_checkpoint(model, state)
    bar.update()
    out = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if to == 'core':
        save_file(out, dst, metadata={'format': 'pt', 'variant': variant, 'source_layout': report.layout,
                                      'network': json.dumps(seg_kwargs)})
        bar.update()
        check = build()
        load_checkpoint(check, read_state_dict(dst))
        for k, v in check.state_dict().items():
            if not torch.equal(v, out[k]):
                raise CheckpointError(f'convert: {k} differs after the round trip')
    else:
        host = to_host(out, to)
        torch.save({'model': host, '__author__': 'dla-plugins', 'matching_heuristics': False} if to == 'detectron2'
                   else {'state_dict': host, 'meta': {'source_layout': report.layout, 'variant': variant}}, dst)
        out = host
        bar.update()
    bar.update()
    bar.close()
    return dict(variant=variant, num_classes=classes, layout=report.layout, description=report.description,
                keys=len(out), dropped_unused=report.dropped_unused, skipped=report.skipped, network=seg_kwargs,
                summary=report.summary())
