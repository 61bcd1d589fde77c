"""Checkpoints: reading (``io``), layout recognition (``detect``), one module per foreign layout (``ucbdrive``,
``centernet``, ``mmdet3d``, ``centernet2``), strict loading (``load``)."""
from .detect import FAMILIES, Layout, convert_state_dict, detect_layout
from .io import CheckpointError, StateDict, read_state_dict, unwrap_state_dict
from .load import LoadReport, adapt_input_conv, load_checkpoint
from .ucbdrive import convert_ucbdrive, is_ucbdrive_layout

__all__ = ['CheckpointError', 'StateDict', 'LoadReport', 'read_state_dict', 'unwrap_state_dict', 'load_checkpoint',
           'adapt_input_conv', 'convert_ucbdrive', 'is_ucbdrive_layout', 'FAMILIES', 'Layout', 'detect_layout',
           'convert_state_dict']
