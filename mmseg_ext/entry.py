"""What the ``python -m mmseg_ext.*`` entries share: bad input is one line ``error: <message>`` on stderr and exit
status 2, as the ``dla-plugins`` command; anything unexpected keeps its traceback and exits with status 1.

Bad input is a wrong argument (argparse), a missing file or folder, a bad value (``ValueError``), an unreadable or
mismatched checkpoint, weights that cannot be fetched or a missing extra. The entries' ``main(argv)`` raises (the
Python API and its tests see the exception); only ``run_entry`` turns it into the line and the exit status.
"""
import argparse
import os
import sys
import traceback
from typing import Any, Callable, List, NoReturn, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from dla_plugins import CheckpointError
from dla_plugins._extras import MissingExtraError
from dla_plugins.weights import WeightsError

__all__ = ['USER_ERRORS', 'EntryParser', 'CfgOptionsAction', 'run_entry', 'check_file', 'check_data_roots']

USER_ERRORS: Tuple[type, ...] = (ValueError, FileNotFoundError, CheckpointError, WeightsError, MissingExtraError)


class EntryParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose bad arguments are one line ``error: <message>`` (no usage block), status 2."""

    def error(self, message: str) -> NoReturn:
        print(f'error: {message}', file=sys.stderr)
        sys.exit(2)


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``--cfg-options KEY=VALUE ...``) that names the option for a pair without ``=``."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: List[str],
                 option_string: Optional[str] = None) -> None:
        bad = [kv for kv in values if '=' not in kv]
        if bad:
            raise argparse.ArgumentError(self, f'KEY=VALUE pairs expected, got {bad[0]!r}')
        super().__call__(parser, namespace, values, option_string)


def run_entry(main: Callable[[Optional[List[str]]], int], prog: str, argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)``; return its status, 2 after printing bad input as one line, 1 after an unexpected
    exception's traceback and a line naming ``prog``."""
    try:
        return main(argv)
    except USER_ERRORS as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a bug or a resource failure (out of memory): show where it happened
        traceback.print_exc()
        print(f'{prog}: unexpected {type(e).__name__} (traceback above)', file=sys.stderr)
        return 1


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
