"""Key layouts of the host adapters: our model's state_dict (DLA or DLASeg) -> a detectron2 or mmseg checkpoint.

detectron2 (``d2_ext``): the DLA under ``backbone.bottom_up.dla.`` (FPN/DLA-Up backbones; ``backbone.dla.`` for the
plain one), the DLA-Up under ``backbone.dla_up.``. mmseg (``mmseg_ext``): the DLA under ``backbone.body.``, the DLA-Up
of ``DLAUpHead`` under ``decode_head.dla_up.`` and the classifier as ``decode_head.conv_seg``.
"""
from typing import Dict, List, Mapping, Optional, Tuple

import torch

__all__ = ['HOSTS', 'to_host']

# (our prefix, host prefix), first match wins; '' is the plain DLA's top level.
HOSTS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    'detectron2': (('backbone.', 'backbone.bottom_up.dla.'), ('neck.', 'backbone.dla_up.'),
                   ('', 'backbone.bottom_up.dla.')),
    'mmseg': (('backbone.', 'backbone.body.'), ('neck.', 'decode_head.dla_up.'),
              ('classifier.', 'decode_head.conv_seg.'), ('', 'backbone.body.')),
}


def to_host(state: Mapping[str, torch.Tensor], host: str, backbone_prefix: Optional[str] = None,
            dropped: Optional[List[str]] = None) -> Dict[str, torch.Tensor]:
    """Rename a DLA/DLASeg state_dict for ``host`` ('detectron2' or 'mmseg').

    Dropped: a plain DLA's ImageNet classifier (``fc``), for detectron2 also DLASeg's classifier and the BatchNorm
    ``num_batches_tracked`` counters (so one file fits FrozenBN, BN and SyncBN models). ``backbone_prefix``
    replaces the host's DLA prefix (e.g. ``backbone.dla.`` for detectron2's plain backbone). The dropped classifier
    keys are appended to ``dropped`` when it is given.
    """
    if host not in HOSTS:
        raise ValueError(f'host: unknown host {host!r}; allowed: {list(HOSTS)}')
    seg = any(k.startswith('neck.') for k in state)
    out: Dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if (not seg and k.startswith('fc.')) or (host == 'detectron2' and (
                k.startswith('classifier.') or k.endswith('num_batches_tracked'))):
            if dropped is not None and not k.endswith('num_batches_tracked'):
                dropped.append(k)
            continue
        for ours, theirs in HOSTS[host]:
            if k.startswith(ours) and (ours or not seg):
                if backbone_prefix is not None and theirs == HOSTS[host][0][1]:
                    theirs = backbone_prefix
                out[theirs + k[len(ours):]] = v.detach().clone()
                break
    return out
