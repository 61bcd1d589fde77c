"""Deep Layer Aggregation (Yu, Wang, Shelhamer, Darrell, CVPR 2018) in pure torch.

Map, by layer (docs/CONTRIBUTING.md, "Layers"; imports go one way): ``files`` (reading, atomic writing); the model:
``variants`` (the architecture table), ``layers`` (norms, blocks, aggregation node), ``dcn`` (deformable conv),
``backbone`` (HDA trees + IDA roots: ``DLA``), ``dla_up`` (IDA-Up/DLA-Up), ``data`` (synthetic shapes); ``checkpoint``
(foreign layouts by rule, strict loading, host layouts); ``weights`` (the registry of public files, the fetcher); the
builders: ``factory`` (``create_dla``), ``seg`` (``DLASeg``), ``detector`` (``CenterNet``), ``pretrained``
(``create_from_weights``), ``convert``; then ``deploy`` (inference fusion, export) and ``tools`` (the ``dla-plugins``
command). Benchmarks live outside the package, in the checkout's ``benchmarks/``. The model state_dicts are identical
to timm's DLA.
"""
from . import weights
from ._version import __version__
from .backbone import DLA, HDATree
from .checkpoint import CheckpointError, LoadReport, load_checkpoint, read_state_dict
from .dcn import ModulatedDeformConv2d, deform_conv2d
from .detector import CenterNet
from .dla_up import DLAUp, IDAUp
from .factory import create_dla
from .layers import AggregationNode, FrozenBatchNorm2d, get_norm_layer
from .pretrained import create_from_weights
from .seg import DLASeg
from .variants import VARIANTS, DLAVariant, list_variants, resolve_variant

__all__ = [
    'DLA', 'HDATree', 'IDAUp', 'DLAUp', 'DLASeg', 'CenterNet', 'AggregationNode', 'ModulatedDeformConv2d',
    'deform_conv2d',
    'FrozenBatchNorm2d', 'create_dla', 'list_variants', 'resolve_variant', 'load_checkpoint', 'read_state_dict',
    'get_norm_layer', 'CheckpointError', 'LoadReport', 'DLAVariant', 'VARIANTS', 'weights', 'create_from_weights',
    '__version__',
]
