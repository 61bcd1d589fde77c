"""The detectron2 configs shipped with dla-plugins: ``get_config_file(name)`` works from a wheel install too, as
detectron2's ``model_zoo.get_config_file`` does. Pure Python: usable without detectron2 installed."""
import os
from typing import List

from dla_plugins._configs import list_shipped_configs, shipped_config_file

__all__ = ['get_config_file', 'list_config_files']

_ADAPTER_DIR = os.path.dirname(os.path.abspath(__file__))
_SUFFIXES = ('.yaml', '.py')


def get_config_file(name: str) -> str:
    """Path of a shipped config, e.g. ``'faster_rcnn_dla34_up_1x.yaml'``."""
    return shipped_config_file(_ADAPTER_DIR, 'detectron2', name, _SUFFIXES)


def list_config_files() -> List[str]:
    """Names of the shipped configs (yaml and LazyConfig; base files included)."""
    return list_shipped_configs(_ADAPTER_DIR, 'detectron2', _SUFFIXES)
