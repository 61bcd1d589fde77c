"""detectron2 adapter: ``import d2_ext`` registers the ``build_dlap_*`` backbones in ``BACKBONE_REGISTRY``.

Registered: ``build_dlap_backbone`` (plain DLA), ``build_dlap_fpn_backbone`` (DLA + FPN + P6 max-pool),
``build_dlap_retinanet_fpn_backbone`` (DLA + FPN + P6/P7), ``build_dlap_up_backbone`` (DLA + DLA-Up neck); and in
``META_ARCH_REGISTRY`` ``DLAPCenterNet``, CenterNet's ctdet detector (:mod:`d2_ext.centernet`).
Config node: ``MODEL.DLAP`` (:func:`add_dlap_config`; :func:`get_cfg` is detectron2's defaults with it). Shipped
configs: :func:`get_config_file`. detectron2's own ``tools/*.py``: ``python -m d2_ext.run path/to/tool.py ARGS``.
``MODEL.WEIGHTS: "dlap://dla34.in1k"`` loads registry weights by name (:mod:`d2_ext.weights`).
"""
from .shipped_configs import get_config_file, list_config_files  # pure Python: locating configs needs no host

__all__ = [
    'DLABackbone', 'DLAUpNeck', 'add_dlap_config', 'get_cfg', 'dlap_norm', 'build_dlap_backbone',
    'build_dlap_fpn_backbone', 'build_dlap_retinanet_fpn_backbone', 'build_dlap_up_backbone', 'IMAGENET_RGB_MEAN',
    'IMAGENET_RGB_STD', 'get_config_file', 'list_config_files', 'DLAPCenterNet',
]

_NOTE = ' and the sal-detectron2 wheel (docs/install.md)'
try:
    import detectron2  # noqa: F401
except ImportError as e:  # exercised by tests/tools/test_extras.py and the wheel test
    from dla_plugins._extras import missing_host_getattr

    __getattr__ = missing_host_getattr('d2_ext', 'detectron2', e, __all__, _NOTE)
else:
    from .backbone import (
        DLABackbone,
        DLAUpNeck,
        build_dlap_backbone,
        build_dlap_fpn_backbone,
        build_dlap_retinanet_fpn_backbone,
        build_dlap_up_backbone,
        dlap_norm,
    )
    from .centernet import DLAPCenterNet
    from .config import IMAGENET_RGB_MEAN, IMAGENET_RGB_STD, add_dlap_config, get_cfg
    from .weights import WeightsHandler  # noqa: F401  (serves 'dlap://NAME' to detectron2's PathManager)


