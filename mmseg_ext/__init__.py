"""mmsegmentation adapter: registers the ``DLA`` backbone, the ``DLAUpHead`` decode head, ``CamVidDataset``, the
``DeviceAwareDDP`` wrapper and ``FiniteLossHook`` in mmseg's registries (and the ``dlap_atomic`` file backend), and
allows mmengine's checkpoints under ``weights_only`` loading.

Load it from a config with ``custom_imports = dict(imports=['mmseg_ext'], allow_failed_imports=False)``.
"""
try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
    import mmseg  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"mmseg_ext needs mmsegmentation 1.x, mmcv 2.x (with ops) and mmengine: "
                      f"pip install 'dla-plugins[mmseg]' (see scripts/setup.sh for mmcv) ({e})") from e

from .serialization import MMENGINE_SAFE_GLOBALS, allow_mmengine_checkpoints

allow_mmengine_checkpoints()

from .backbone import DLA, norm_layer_from_cfg  # noqa: E402
from .camvid import CAMVID_CLASSES, CAMVID_PALETTE, CamVidDataset  # noqa: E402
from .checkpointing import FiniteLossHook  # noqa: E402  (also registers the 'dlap_atomic' file backend)
from .dist import DeviceAwareDDP, adapt_config_for_cpu  # noqa: E402
from .head import DLAUpHead  # noqa: E402

REGISTERED = dict(MODELS=('DLA', 'DLAUpHead'), DATASETS=('CamVidDataset',), MODEL_WRAPPERS=('DeviceAwareDDP',),
                  HOOKS=('FiniteLossHook',))

__all__ = ['DLA', 'DLAUpHead', 'CamVidDataset', 'DeviceAwareDDP', 'FiniteLossHook', 'CAMVID_CLASSES', 'CAMVID_PALETTE',
           'REGISTERED', 'MMENGINE_SAFE_GLOBALS', 'allow_mmengine_checkpoints', 'adapt_config_for_cpu',
           'norm_layer_from_cfg']
