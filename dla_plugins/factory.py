"""``create_dla``: build a variant by name, optionally loading a checkpoint."""
import logging
import os
from typing import Any, Optional, Union

from .backbone import DLA
from .checkpoint import load_checkpoint, read_state_dict
from .layers import NormLayer
from .variants import resolve_variant

__all__ = ['create_dla']
_logger = logging.getLogger(__name__)


def create_dla(name: str, *, num_classes: int = 1000, in_chans: int = 3, output_stride: int = 32,
               norm_layer: Union[str, NormLayer, None] = None, drop_rate: float = 0.0, global_pool: str = 'avg',
               checkpoint_path: Optional[Union[str, os.PathLike]] = None, **kwargs: Any) -> DLA:
    """Build DLA variant ``name`` (canonical or paper name, see :func:`list_variants`).

    With ``checkpoint_path`` (timm or ucbdrive layout, safetensors or .pth) the weights are loaded strictly; a
    checkpoint classifier of another size is replaced by a fresh one when ``num_classes`` differs from it (and
    ``num_classes=0`` drops it), and a 3-channel first conv is adapted to ``in_chans``; both are logged.
    """
    variant = resolve_variant(name)
    model = DLA.from_variant(variant, num_classes=num_classes, in_chans=in_chans, output_stride=output_stride,
                             norm_layer=norm_layer, drop_rate=drop_rate, global_pool=global_pool, **kwargs)
    if checkpoint_path is not None:
        state = read_state_dict(checkpoint_path)
        ckpt_classes = state['fc.weight'].shape[0] if 'fc.weight' in state else 0
        drop = ckpt_classes != num_classes or global_pool == 'catavgmax'
        report = load_checkpoint(model, state, drop_classifier=drop, adapt_in_chans=in_chans != 3)
        if report.dropped_classifier or report.adapted_input_conv:
            _logger.info('%s: loaded %s; classifier re-initialised: %s; adapted first conv: %s', variant.name,
                         checkpoint_path, bool(report.dropped_classifier), report.adapted_input_conv)
    return model
