"""``create_dla``: build a variant by name, optionally loading a checkpoint."""
import logging
import os
from typing import Any, Optional, Union

from .backbone import DLA
from .checkpoint import load_checkpoint
from .layers import NormLayer
from .variants import resolve_variant
from .weights import pretrained_path

__all__ = ['create_dla']
_logger = logging.getLogger(__name__)


def create_dla(name: str, *, num_classes: int = 1000, in_chans: int = 3, output_stride: int = 32,
               norm_layer: Union[str, NormLayer, None] = None, drop_rate: float = 0.0, global_pool: str = 'avg',
               checkpoint_path: Optional[Union[str, os.PathLike]] = None, pretrained: Union[bool, str] = False,
               **kwargs: Any) -> DLA:
    """Build DLA variant ``name`` (canonical or paper name, see :func:`list_variants`).

    ``pretrained`` loads a registry file by name, fetched on first use (:mod:`dla_plugins.weights`): ``True`` or
    ``'in1k'`` the ImageNet weights (timm's), a tag (``'ucbdrive'``, ``'tricks'``) or a full registry name
    (``'centernet/ctdet_coco_dla_2x'``: a dense file gives its backbone). ``checkpoint_path`` also takes
    ``'dlap://NAME'``.

    With ``checkpoint_path`` (any recognised layout, safetensors or .pth; dense checkpoints give their backbone) the
    weights are loaded strictly; a checkpoint classifier of another size (or none) leaves a fresh one
    (``classifier='if_mismatched'``, decided on the converted state), and a 3-channel first conv is adapted to
    ``in_chans``; both are logged.
    """
    variant = resolve_variant(name)
    model = DLA.from_variant(variant, num_classes=num_classes, in_chans=in_chans, output_stride=output_stride,
                             norm_layer=norm_layer, drop_rate=drop_rate, global_pool=global_pool, **kwargs)
    if pretrained is not False and pretrained is not None:
        checkpoint_path = pretrained_path(variant.name, pretrained, checkpoint_path)
    if checkpoint_path is not None:
        policy = 'drop' if global_pool == 'catavgmax' else 'if_mismatched'  # catavgmax: the classifier is 2x wider
        report = load_checkpoint(model, checkpoint_path, classifier=policy, adapt_in_chans=in_chans != 3)
        if report.dropped_classifier or report.adapted_input_conv:
            _logger.info('%s: loaded %s; classifier re-initialised: %s; adapted first conv: %s', variant.name,
                         checkpoint_path, bool(report.dropped_classifier), report.adapted_input_conv)
    return model
