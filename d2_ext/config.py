"""``add_dlap_config``: the ``MODEL.DLAP`` config node (named so it cannot collide with CenterNet2's ``MODEL.DLA``),
and the ``/@import-d2_ext/detectron2-model-zoo/`` prefix through which our yaml configs inherit detectron2's own bases.
``get_cfg`` (detectron2's defaults + ``MODEL.DLAP``) for your own scripts, ``add_dlap_to_defaults`` for detectron2's
stock tools (what ``python -m d2_ext.run`` calls). ``detectron2_input_error``: which of detectron2's exceptions are
bad input (for the command-line entries)."""
import functools
import os
from typing import Any, FrozenSet, List

from detectron2 import model_zoo
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _detectron2_get_cfg
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

__all__ = ['add_dlap_config', 'get_cfg', 'add_dlap_to_defaults', 'IMAGENET_RGB_MEAN', 'IMAGENET_RGB_STD',
           'MODEL_ZOO_PREFIX', 'ModelZooConfigHandler', 'detectron2_input_error']

# Without `import d2_ext` nothing serves this prefix, and the stock tools' first error is detectron2's
# "FileNotFoundError: ... No such file or directory: '/@import-d2_ext/detectron2-model-zoo/Base-RCNN-FPN.yaml'":
# the path itself says what is missing (tests/d2/test_stock_tools.py::test_stock_tool_without_d2_ext_names_it).
MODEL_ZOO_PREFIX = '/@import-d2_ext/detectron2-model-zoo/'


class ModelZooConfigHandler(PathHandler):
    """Resolves ``/@import-d2_ext/detectron2-model-zoo/NAME`` to ``detectron2.model_zoo.get_config_file(NAME)``.

    Our ``Base-DLA.yaml`` inherits detectron2's own ``Base-RCNN-FPN.yaml`` through ``_BASE_``; fvcore resolves a
    ``_BASE_`` relative to the including file unless it starts with '/', so the prefix is absolute-looking and served
    by this handler, registered on detectron2's public ``PathManager`` when ``d2_ext`` is imported.
    """

    def _get_supported_prefixes(self) -> List[str]:
        return [MODEL_ZOO_PREFIX]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return model_zoo.get_config_file(path[len(MODEL_ZOO_PREFIX):])

    def _open(self, path: str, mode: str = 'r', **kwargs: Any):
        return PathManager.open(self._get_local_path(path), mode, **kwargs)

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        try:
            return os.path.isfile(self._get_local_path(path))
        except RuntimeError:  # model_zoo: no such config
            return False

    def _exists(self, path: str, **kwargs: Any) -> bool:
        return self._isfile(path)


PathManager.register_handler(ModelZooConfigHandler())

# What timm/ucbdrive ImageNet weights expect, on detectron2's 0-255 scale, with INPUT.FORMAT 'RGB'.
IMAGENET_RGB_MEAN = [123.675, 116.28, 103.53]
IMAGENET_RGB_STD = [58.395, 57.12, 57.375]


def add_dlap_config(cfg: CN) -> CN:
    """Add ``MODEL.DLAP`` (bottom-up DLA) and ``MODEL.DLAP.NECK`` (DLA-Up neck) to ``cfg`` in place; returns it.

    The FPN builders read ``MODEL.FPN.OUT_CHANNELS/NORM/FUSE_TYPE`` (detectron2's own keys) and take their input
    levels from ``MODEL.DLAP.OUT_FEATURES``.
    """
    cfg.MODEL.DLAP = CN()
    d = cfg.MODEL.DLAP
    d.ARCH = 'dla34'  # any dla_plugins variant (dla34, dla46_c, dla60x, ...)
    d.OUT_FEATURES = ['level2', 'level3', 'level4', 'level5']  # strides 4, 8, 16, 32
    d.NORM = 'FrozenBN'  # FrozenBN, BN, SyncBN, naiveSyncBN, GN (detectron2's get_norm; GN groups = gcd(32, C))
    d.FREEZE_AT = 2  # ResNet meaning: 0 none, 1 stem (base_layer, level0, level1), k >= 2 stem + level2..level{k}
    d.OUTPUT_STRIDE = 32  # 16/8 dilate level5/level4 (plain backbone only; FPN/DLA-Up need 32)
    d.GRAD_CHECKPOINTING = False
    d.NECK = CN()
    d.NECK.OUT_CHANNELS = 256  # 0 keeps each level's own width
    d.NECK.NORM = 'GN'  # norm of the DLA-Up aggregation nodes and projections
    d.NECK.NODE_TYPE = 'conv'  # 'conv' or 'dcn' (modulated deformable conv)
    d.NECK.DCN_IMPL = 'auto'  # deformable kernel: 'auto', 'native' (pure PyTorch) or 'torchvision'; same weights
    d.NECK.BIAS = 'auto'  # conv bias of the 3x3 DLA-Up convs: 'auto' (CenterNet: with dcn), 'on', 'off'
    d.NECK.FLAVOR = 'paper'  # 'paper' (ucbdrive DLA-Up) or 'centernet' (CenterNet's DLA-Up + final IDA-Up on p<first>)
    d.NECK.NODE_KERNEL = 3  # aggregation node kernel (1: CenterNet2's DLAUP)
    d.NECK.FINAL_IDA = 'auto'  # the final IDA-Up stage: 'auto' (with FLAVOR centernet), 'on', 'off'

    d.NECK.TOP_BLOCK = 'maxpool'  # '' (none), 'maxpool' (+p6, R-CNN) or 'p6p7' (+p6, p7, RetinaNet)
    d.NECK.SIZE_DIVISIBILITY = 32
    _add_centernet_config(d)
    return cfg


def _add_centernet_config(d: CN) -> None:
    """``MODEL.DLAP.CENTERNET``: the ``DLAPCenterNet`` meta-architecture (:mod:`d2_ext.centernet`), CenterNet's
    ctdet defaults (``opts.py``)."""
    d.CENTERNET = CN()
    c = d.CENTERNET
    c.IN_FEATURE = 'p2'  # a stride-4 backbone output (DLA-Up's first)
    c.NUM_CLASSES = 80
    c.HEAD_CONV = 256  # hidden channels of each head (0: one conv per head)
    c.FINAL_KERNEL = 1
    c.INPUT_SIZE = 512  # training and test input (a multiple of 32)
    c.KEEP_RES = False  # test at the image's own size, padded to (side | 31) + 1
    c.RANDOM_CROP = True  # training: random scale 0.6-1.3 and centre; False: SCALE/SHIFT jitter (not_rand_crop)
    c.SCALE = 0.4
    c.SHIFT = 0.1
    c.FLIP = 0.5  # training flip probability
    c.COLOR_AUG = True  # brightness/contrast/saturation + PCA lighting
    c.FLIP_TEST = False  # average heatmap and size with the mirrored image
    c.K = 100  # detections per image (top K peaks over all classes)
    c.SCORE_THRESH = 0.0  # evaluation keeps all K, as CenterNet does
    c.HM_WEIGHT = 1.0
    c.WH_WEIGHT = 0.1
    c.OFF_WEIGHT = 1.0
    c.MAX_OBJS = 128
    c.REINIT_HM = False  # fine-tuning to another class count: keep a fresh heatmap head (logged)


def get_cfg() -> CN:
    """detectron2's default config (``detectron2.config.get_cfg()``) with ``MODEL.DLAP`` added: for your own scripts,
    in place of detectron2's ``get_cfg`` (``cfg = d2_ext.get_cfg(); cfg.merge_from_file(...)``)."""
    cfg = _detectron2_get_cfg()
    return cfg if 'DLAP' in cfg.MODEL else add_dlap_config(cfg)


def add_dlap_to_defaults() -> None:
    """Add ``MODEL.DLAP`` to detectron2's default config in this process, so that every later
    ``detectron2.config.get_cfg()`` holds it: what detectron2's stock ``tools/*.py`` need to read our yaml configs.

    ``python -m d2_ext.run SCRIPT`` calls it (in every process it starts); ``import d2_ext`` alone does not, it leaves
    detectron2's defaults as they are. Calling it again changes nothing.
    """
    # The one place where d2_ext changes detectron2 state beyond its public registries. detectron2 has no public hook
    # for extra default keys: its get_cfg() returns a clone of detectron2.config.defaults._C, and the stock tools call
    # that function. Adding our node to _C (as AdelaiDet's and CenterMask's configs do at import) adds one new node,
    # changes no existing default, and reaches every get_cfg() caller, including modules that bound get_cfg before
    # we ran (model_zoo.get_config); replacing the get_cfg function object would not.
    from detectron2.config import defaults

    if 'DLAP' not in defaults._C.MODEL:
        add_dlap_config(defaults._C)


@functools.cache
def _reader_codes() -> FrozenSet[Any]:
    from detectron2.config import LazyConfig
    from detectron2.data import DatasetCatalog
    from fvcore.common.checkpoint import Checkpointer
    from fvcore.common.config import CfgNode as FvcoreCfgNode
    from fvcore.common.registry import Registry

    readers = (CN.merge_from_file, FvcoreCfgNode.merge_from_list, LazyConfig.load, LazyConfig.apply_overrides,
               Registry.get, type(DatasetCatalog).get, Checkpointer.load)
    return frozenset(f.__code__ for f in readers)


def detectron2_input_error(error: BaseException) -> bool:
    """Whether ``error`` is bad input that detectron2 reports with a generic exception (``assert``, ``KeyError``, ...):
    raised while it reads a yaml config (``merge_from_file``), command-line overrides (``merge_from_list``), a
    LazyConfig or its overrides, looks up a name the config gives in a registry (``MODEL.META_ARCHITECTURE``, ...),
    loads a dataset or a checkpoint file. Decided by the functions on the traceback, not by message text."""
    import yaml

    if not isinstance(error, (AssertionError, KeyError, ValueError, OSError, yaml.YAMLError)):
        return False
    codes, tb = _reader_codes(), error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False
