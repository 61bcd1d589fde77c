"""Checkpoints: reading (``io``), one module per foreign layout (``ucbdrive``), strict loading (``load``)."""
from .io import CheckpointError, StateDict, read_state_dict, unwrap_state_dict
from .load import LoadReport, adapt_input_conv, load_checkpoint
from .ucbdrive import convert_ucbdrive, is_ucbdrive_layout

__all__ = ['CheckpointError', 'StateDict', 'LoadReport', 'read_state_dict', 'unwrap_state_dict', 'load_checkpoint',
           'adapt_input_conv', 'convert_ucbdrive', 'is_ucbdrive_layout']
