"""Registry weights by name in detectron2: ``MODEL.WEIGHTS: "dlap://dla34.in1k"`` (and LazyConfig
``train.init_checkpoint``, ``DetectionCheckpointer(model).load('dlap://NAME')``) through a handler on detectron2's
public ``PathManager``, which ``DetectionCheckpointer`` asks for a local file.

The registry file (:mod:`dla_plugins.weights`: fetched on first use, verified, cached) is converted once per file
hash and converter version (:func:`dla_plugins.convert.host_file`): the DLA at ``dla.*`` (a whole-network file also
gives its DLA-Up at ``dla_up.*``), marked ``matching_heuristics`` so that one file loads into every ``build_dlap_*``
backbone (``backbone.dla.*`` of the plain one, ``backbone.bottom_up.dla.*`` of the FPN and DLA-Up ones). The load is
strict all the same: our backbones refuse a checkpoint that leaves any DLA tensor unloaded or mis-shaped
(:func:`dla_plugins.checkpoint.guard.guard_load`), naming the file's DLA and the model's; the one log line is written
after the load, with the true count."""
import logging
from typing import Any, List

from detectron2.utils.file_io import PathManager
from iopath.common.file_io import PathHandler

from dla_plugins.checkpoint.guard import note_registry_file
from dla_plugins.convert import host_file
from dla_plugins.files import WEIGHTS_SCHEME, weights_name

__all__ = ['WeightsHandler', 'detectron2_file']

_logger = logging.getLogger('detectron2.d2_ext.weights')


def detectron2_file(name: str) -> str:
    """The detectron2 file of registry weights ``name`` (fetched and converted on first use, cached); the next
    load into one of our backbones names it in errors and logs its line."""
    out = host_file(name, 'detectron2')
    note_registry_file(name, out.variant, out.network, out.skipped, _logger)
    return str(out.path)


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
