"""detectron2 adapter: ``import d2_ext`` registers the ``build_dlap_*`` backbones in ``BACKBONE_REGISTRY``.

Registered: ``build_dlap_backbone`` (plain DLA), ``build_dlap_fpn_backbone`` (DLA + FPN + P6 max-pool),
``build_dlap_retinanet_fpn_backbone`` (DLA + FPN + P6/P7), ``build_dlap_up_backbone`` (DLA + DLA-Up neck).
Config node: ``MODEL.DLAP`` (:func:`add_dlap_config`). Shipped configs: :func:`get_config_file`.
"""
try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('d2_ext needs detectron2: install the extra with `pip install dla-plugins[detectron2]` and '
                      'detectron2 itself (see scripts/setup.sh: the sal-detectron2 wheel)') from e

from .backbone import (
    DLABackbone,
    DLAUpNeck,
    build_dlap_backbone,
    build_dlap_fpn_backbone,
    build_dlap_retinanet_fpn_backbone,
    build_dlap_up_backbone,
    dlap_norm,
)
from .config import IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, add_dlap_config, get_config_file, list_config_files

__all__ = [
    'DLABackbone', 'DLAUpNeck', 'add_dlap_config', 'dlap_norm', 'build_dlap_backbone', 'build_dlap_fpn_backbone',
    'build_dlap_retinanet_fpn_backbone', 'build_dlap_up_backbone', 'IMAGENET_RGB_MEAN', 'IMAGENET_RGB_STD',
    'get_config_file', 'list_config_files',
]
