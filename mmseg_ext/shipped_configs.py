"""The mmseg configs shipped with dla-plugins: ``get_config_file(name)`` works from a wheel install too. Pure Python:
usable without mmseg installed.

mmengine's ``pkg::path`` inheritance accepts only OpenMMLab packages, so configs are handed out as real file paths.
"""
import os
from typing import List

from dla_plugins._configs import list_shipped_configs, shipped_config_file

__all__ = ['get_config_file', 'list_config_files']

_ADAPTER_DIR = os.path.dirname(os.path.abspath(__file__))


def get_config_file(name: str) -> str:
    """Path of a shipped config, e.g. ``'dla34_idaup_4xb2-80k_cityscapes-512x1024.py'``."""
    return shipped_config_file(_ADAPTER_DIR, 'mmseg', name, ('.py',))


def list_config_files() -> List[str]:
    """Names of the shipped configs (``_base_`` files included)."""
    return list_shipped_configs(_ADAPTER_DIR, 'mmseg', ('.py',))
