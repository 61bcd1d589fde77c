"""The mmseg-specific checks the ``python -m mmseg_ext.*`` entries share: ``--cfg-options`` pairs, files, and data
folders checked before mmengine's Runner starts. How an entry ends (bad input as one line ``PROG: error: MESSAGE``,
exit status 2) is :mod:`dla_plugins.tools.errors`; the entries' ``main(argv)`` raises (the Python API and its tests
see the exception), only their ``__main__`` path goes through :func:`~dla_plugins.tools.errors.run_cli`.
"""
import argparse
import os
from typing import Any, List, Optional, Sequence

from mmengine.config import Config, DictAction

__all__ = ['CfgOptionsAction', 'check_file', 'check_data_roots']


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``--cfg-options KEY=VALUE ...``) that names the option for a pair without ``=``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: List[str],
                 option_string: Optional[str] = None) -> None:
        bad = [kv for kv in values if '=' not in kv]
        if bad:
            raise argparse.ArgumentError(self, f'KEY=VALUE pairs expected, got {bad[0]!r}')
        super().__call__(parser, namespace, values, option_string)


def check_file(arg: str, path: str, what: str = 'file') -> str:
    """``path`` itself when it is an existing file or a URL-style name (``dlap://``, ``https://``).

    Raises:
        FileNotFoundError: ``'{arg}: no such {what} {path!r}'``.
    """
    if '://' not in path and not os.path.isfile(path):
        raise FileNotFoundError(f'{arg}: no such {what} {path!r}')
    return path


def check_data_roots(cfg: Config, loaders: Sequence[str]) -> None:
    """Fail before the Runner starts (and logs) when a local ``data_root`` of these dataloaders' datasets is missing;
    wrapped datasets (``dataset``, ``ConcatDataset``'s ``datasets``) are checked too.

    Raises:
        FileNotFoundError: ``'{loader}.dataset.data_root: no such folder ...'``, naming the key to set.
    """
    for loader in loaders:
        if cfg.get(loader) is not None:
            _check_dataset_root(cfg[loader].get('dataset'), f'{loader}.dataset')


def _check_dataset_root(dataset: Any, key: str) -> None:
    if not isinstance(dataset, dict):
        return
    root = dataset.get('data_root')
    if isinstance(root, str) and root and '://' not in root and not os.path.isdir(root):
        where = '' if os.path.isabs(root) else f' (relative to the working directory {os.getcwd()!r})'
        raise FileNotFoundError(f'{key}.data_root: no such folder {root!r}{where}; set it with --cfg-options '
                                f'{key}.data_root=PATH')
    _check_dataset_root(dataset.get('dataset'), f'{key}.dataset')
    for i, sub in enumerate(dataset.get('datasets') or []):
        _check_dataset_root(sub, f'{key}.datasets.{i}')
