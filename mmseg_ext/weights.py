"""Registry weights by name in mmengine: ``'dlap://NAME'`` (:mod:`dla_plugins.weights`) wherever mmengine loads a
checkpoint (``load_from``, ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of any module, ``tools/test.py``),
through mmengine's public ``CheckpointLoader.register_scheme``. The file is fetched on first use and converted to
mmseg's layout once per file hash and converter version (:func:`dla_plugins.convert.host_file`: ``DLA`` backbone at
``backbone.body.``, a DLA-Up at ``decode_head.``), then read with the caller's ``map_location``. mmengine loads
non-strictly, but our ``DLA`` and ``DLAUpHead`` refuse a file that does not fit them
(:func:`dla_plugins.checkpoint.guard.guard_load`); the one log line is written after the load. The ``DLA``
backbone's own ``init_cfg`` goes through the core loader instead (strict, see ``DLA.init_weights``)."""
from typing import Any, Dict, Optional

import torch
from mmengine.logging import MMLogger
from mmengine.runner import CheckpointLoader

from dla_plugins.checkpoint.guard import note_registry_file
from dla_plugins.convert import host_file
from dla_plugins.files import WEIGHTS_SCHEME, weights_name

__all__ = ['load_from_dlap']


def load_from_dlap(filename: str, map_location: Optional[Any] = None) -> Dict[str, Any]:
    """mmengine checkpoint loader for ``'dlap://NAME'``: ``{'state_dict': <mmseg layout>, 'meta': {...}}``."""
    name = weights_name(filename)
    out = host_file(name, 'mmseg')
    note_registry_file(name, out.variant, out.network, out.skipped, MMLogger.get_current_instance())
    ckpt = torch.load(out.path, map_location=map_location or 'cpu', weights_only=True)
    ckpt['meta']['dlap'] = name
    return ckpt


CheckpointLoader.register_scheme(prefixes=WEIGHTS_SCHEME, loader=load_from_dlap, force=True)
