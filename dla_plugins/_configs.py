"""Where the shipped host configs live: inside the installed adapter package (wheel) or in the checkout's configs/.

The repository's top-level ``configs/`` is the source of truth; building the wheel copies ``configs/detectron2`` into
``d2_ext/configs`` and ``configs/mmseg`` into ``mmseg_ext/configs`` (``setup.py``), as detectron2 ships its model zoo.
"""
import os
from typing import List

__all__ = ['shipped_config_dir', 'shipped_config_file', 'list_shipped_configs']


def shipped_config_dir(adapter_dir: str, host: str) -> str:
    """The folder holding ``host``'s configs for the adapter package at ``adapter_dir`` (wheel, else checkout)."""
    packaged = os.path.join(adapter_dir, 'configs')
    if os.path.isdir(packaged):
        return packaged
    return os.path.join(os.path.dirname(os.path.abspath(adapter_dir)), 'configs', host)


def list_shipped_configs(adapter_dir: str, host: str, suffixes: tuple) -> List[str]:
    """Config names (relative paths) shipped for ``host``, base files included."""
    root = shipped_config_dir(adapter_dir, host)
    names = []
    for dirpath, _, files in os.walk(root):
        names += [os.path.relpath(os.path.join(dirpath, f), root) for f in files if f.endswith(suffixes)]
    return sorted(names)


def shipped_config_file(adapter_dir: str, host: str, name: str, suffixes: tuple) -> str:
    """Absolute path of the shipped config ``name`` (e.g. 'faster_rcnn_dla34_up_1x.yaml').

    Raises:
        FileNotFoundError: no such config; the message lists the available names.
    """
    path = os.path.join(shipped_config_dir(adapter_dir, host), name)
    if not os.path.isfile(path):
        available = ', '.join(list_shipped_configs(adapter_dir, host, suffixes))
        raise FileNotFoundError(f'name: no {host} config {name!r} ships with dla-plugins; available: {available}')
    return path
