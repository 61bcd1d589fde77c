"""Checkpoints: reading and atomic writing (``io``), layout rules (``rules``; one module per foreign family:
``ucbdrive``, ``centernet``, ``mmdet3d``, ``centernet2``) ordered and applied by ``detect``, strict loading (``load``),
conversion for every target (``convert``)."""
from ..files import CheckpointError, StateDict, read_state_dict, save_atomic, unwrap_state_dict
from .detect import FAMILIES, REGISTRY, Layout, convert_state_dict, detect_layout, rule_of
from .load import CLASSIFIER_POLICIES, LoadReport, adapt_input_conv, load_checkpoint, prepare_state_dict
from .rules import LayoutRule

__all__ = ['CheckpointError', 'StateDict', 'LoadReport', 'read_state_dict', 'unwrap_state_dict', 'save_atomic',
           'load_checkpoint', 'prepare_state_dict', 'CLASSIFIER_POLICIES', 'adapt_input_conv', 'FAMILIES', 'REGISTRY',
           'Layout', 'LayoutRule', 'detect_layout', 'convert_state_dict', 'rule_of']
