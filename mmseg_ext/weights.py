"""Registry weights by name in mmengine: ``'dlap://NAME'`` (:mod:`dla_plugins.weights`) wherever mmengine loads a
checkpoint (``load_from``, ``init_cfg=dict(type='Pretrained', checkpoint=...)`` of any module, ``tools/test.py``),
through mmengine's public ``CheckpointLoader.register_scheme``. The file is fetched on first use, converted to
mmseg's layout (``DLA`` backbone at ``backbone.body.``, a DLA-Up at ``decode_head.``) and one line is logged. The
``DLA`` backbone's own ``init_cfg`` goes through the core loader instead (strict, see ``DLA.init_weights``)."""
from typing import Any, Dict, Optional

from mmengine.logging import MMLogger
from mmengine.runner import CheckpointLoader

from dla_plugins.convert import convert
from dla_plugins.files import WEIGHTS_SCHEME, weights_name
from dla_plugins.weights import load_line

__all__ = ['load_from_dlap']


def load_from_dlap(filename: str, map_location: Optional[Any] = None) -> Dict[str, Any]:
    """mmengine checkpoint loader for ``'dlap://NAME'``: ``{'state_dict': <mmseg layout>, 'meta': {...}}``."""
    name = weights_name(filename)
    out = convert(filename, 'mmseg')
    MMLogger.get_current_instance().info(
        load_line(name, len(out.state), list(out.report.skipped) + out.report.dropped_classifier, 'the mmseg layout'))
    ckpt = out.checkpoint()
    ckpt['meta']['dlap'] = name
    return ckpt


CheckpointLoader.register_scheme(prefixes=WEIGHTS_SCHEME, loader=load_from_dlap, force=True)
