"""Deep Layer Aggregation (Yu, Wang, Shelhamer, Darrell, CVPR 2018) in pure torch.

The model state_dicts are identical to timm's DLA; ucbdrive/dla checkpoints convert by rule.
"""
from .checkpoint import CheckpointError, LoadReport, convert_ucbdrive, load_checkpoint, read_state_dict
from .factory import create_dla
from .layers import AggregationNode, FrozenBatchNorm2d, ModulatedDeformConv2d, get_norm_layer
from .model import DLA, HDATree
from .up import DLASeg, DLAUp, IDAUp
from .variants import VARIANTS, DLAVariant, list_variants, resolve_variant

__version__ = '0.1.0'
__all__ = [
    'DLA', 'HDATree', 'IDAUp', 'DLAUp', 'DLASeg', 'AggregationNode', 'ModulatedDeformConv2d', 'FrozenBatchNorm2d',
    'create_dla', 'list_variants', 'resolve_variant', 'load_checkpoint', 'read_state_dict', 'convert_ucbdrive',
    'get_norm_layer', 'CheckpointError', 'LoadReport', 'DLAVariant', 'VARIANTS',
]
