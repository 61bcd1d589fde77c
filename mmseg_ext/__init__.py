"""mmsegmentation adapter: registers the ``DLA`` backbone, the ``DLAUpHead`` decode head, ``CamVidDataset`` and the
``DeviceAwareDDP`` wrapper in mmseg's registries, and allows mmengine's checkpoints under ``weights_only`` loading.
Boundary detection (``BSDS500Dataset``, ``LoadBoundaryAnnotations``, ``WeightedBoundaryLoss``, ``BoundaryMetric``)
lives in :mod:`mmseg_ext.boundary` and registers on import too.

Load it from a config with ``custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)``.
"""
from .shipped_configs import get_config_file, list_config_files  # pure Python: locating configs needs no host

REGISTERED = dict(MODELS=('DLA', 'DLAUpHead', 'WeightedBoundaryLoss'),
                  DATASETS=('CamVidDataset', 'BSDS500Dataset'), MODEL_WRAPPERS=('DeviceAwareDDP',),
                  HOOKS=('FiniteLossHook',), TRANSFORMS=('LoadBoundaryAnnotations',), METRICS=('BoundaryMetric',))

__all__ = ['DLA', 'DLAUpHead', 'CamVidDataset', 'DeviceAwareDDP', 'CAMVID_CLASSES', 'CAMVID_PALETTE', 'REGISTERED',
           'MMENGINE_SAFE_GLOBALS', 'allow_mmengine_checkpoints', 'adapt_config_for_cpu', 'norm_layer_from_cfg',
           'get_config_file', 'list_config_files', 'FiniteLossHook', 'BSDS500Dataset', 'LoadBoundaryAnnotations',
           'WeightedBoundaryLoss', 'BoundaryMetric']

_NOTE = ' (mmcv with its compiled ops: docs/install.md)'
try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
    import mmseg  # noqa: F401
except ImportError as e:  # exercised by tests/tools/test_extras.py and the wheel test
    from dla_plugins._extras import missing_host_getattr

    __getattr__ = missing_host_getattr('mmseg_ext', 'mmseg', e, __all__, _NOTE)
else:
    from .serialization import MMENGINE_SAFE_GLOBALS, allow_mmengine_checkpoints

    allow_mmengine_checkpoints()

    from .backbone import DLA, norm_layer_from_cfg
    from .boundary import BoundaryMetric, BSDS500Dataset, LoadBoundaryAnnotations, WeightedBoundaryLoss
    from .camvid import CAMVID_CLASSES, CAMVID_PALETTE, CamVidDataset
    from .checkpointing import FiniteLossHook  # also registers the 'dlap_atomic' file backend
    from .dist import DeviceAwareDDP, adapt_config_for_cpu
    from .head import DLAUpHead
    from .weights import load_from_dlap  # noqa: F401  (registers the 'dlap://' checkpoint scheme)


