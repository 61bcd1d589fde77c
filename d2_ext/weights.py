"""Registry weights by name in detectron2: ``MODEL.WEIGHTS: "dlap://dla34.in1k"`` (and LazyConfig
``train.init_checkpoint``) through a handler on detectron2's public ``PathManager``, which ``DetectionCheckpointer``
asks for a local file.

The registry file (:mod:`dla_plugins.weights`: fetched on first use, verified, cached) is converted once per file
hash into ``<cache>/<name>/detectron2-<sha256[:8]>.pth``: the DLA at ``dla.*`` (a whole-network file also gives
its DLA-Up at ``dla_up.*``), marked ``matching_heuristics`` so that ``DetectionCheckpointer`` matches each key to the
one model key that ends with it. One file thus loads into every ``build_dlap_*`` backbone (``backbone.dla.*`` of the
plain one, ``backbone.bottom_up.dla.*`` of the FPN and DLA-Up ones) with no backbone key missing; detectron2 logs
what stayed unloaded (FPN, heads) as it does for its own ImageNet files. One line is logged per load."""
import logging
from pathlib import Path
from typing import Any, List

import torch
from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from dla_plugins.convert import convert
from dla_plugins.files import WEIGHTS_SCHEME, save_atomic, weights_name
from dla_plugins.weights import cache_record, fetch, load_line

from .layout import MODULE_PARENTS

__all__ = ['WeightsHandler', 'detectron2_file']

_logger = logging.getLogger('detectron2.d2_ext.weights')


def _strip(key: str) -> str:
    return next(key[len(p):] for p in MODULE_PARENTS + ('',) if key.startswith(p))


def detectron2_file(name: str) -> str:
    """The detectron2 file of registry weights ``name`` (fetched and converted on first use; the conversion is
    cached beside the file, keyed by its sha256)."""
    from filelock import FileLock

    src = Path(fetch(name))
    dst = src.parent / f'detectron2-{cache_record(name).sha256[:8]}.pth'  # fetch() leaves a record of what it verified
    with FileLock(str(src.parent / '.convert.lock')):  # DDP ranks convert once
        if dst.is_file():  # our own file, just for its counts: mapped, not read (DetectionCheckpointer reads it)
            ckpt = torch.load(dst, map_location='cpu', mmap=True, weights_only=True)
        else:
            out = convert(str(src), 'detectron2')
            ckpt = out.checkpoint()
            ckpt.update(model={_strip(k): v for k, v in out.state.items()}, matching_heuristics=True,
                        skipped=sorted(out.report.skipped) + out.report.dropped_classifier)
            save_atomic(ckpt, dst)
    loaded, skipped = len(ckpt['model']), list(ckpt['skipped'])
    _logger.info(load_line(name, loaded, skipped, 'the detectron2 DLA (matched by name: backbone[.bottom_up].dla*)'))
    return str(dst)


class WeightsHandler(PathHandler):
    """Serves ``dlap://NAME`` to detectron2's ``PathManager`` as :func:`detectron2_file` of NAME."""

    def _get_supported_prefixes(self) -> List[str]:
        return [WEIGHTS_SCHEME]

    def _get_local_path(self, path: str, **kwargs: Any) -> str:
        return detectron2_file(weights_name(path))

    def _open(self, path: str, mode: str = 'rb', **kwargs: Any):
        return open(self._get_local_path(path), mode)

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return False  # not a local file until fetched: DetectionCheckpointer then asks for get_local_path

    def _exists(self, path: str, **kwargs: Any) -> bool:
        return False


PathManager.register_handler(WeightsHandler())
