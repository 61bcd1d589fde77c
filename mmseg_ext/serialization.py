"""Let torch >= 2.6's ``weights_only=True`` loading read the checkpoints that mmengine 0.10 itself saves.

mmengine calls ``torch.load`` without ``weights_only``, so torch defaults to its safe unpickler, which refuses the few
non-tensor objects mmengine stores besides the weights: the ``MessageHub`` log histories (``HistoryBuffer``, holding
numpy arrays and references to its statistics methods) and numpy scalars. When ``mmseg_ext`` is imported (which a
config's ``custom_imports`` does before any checkpoint is read) we allow exactly those with
``torch.serialization.add_safe_globals``. Loading stays ``weights_only``: a checkpoint holding anything else fails.

Python pickles ``HistoryBuffer.min`` (a method stored in the buffer's state) as ``builtins.getattr(HistoryBuffer,
'min')``. A general ``getattr`` would let a checkpoint reach any attribute of any allowed object, so under that name we
register :func:`history_buffer_method`, which returns only HistoryBuffer's own statistics methods and rejects the rest.
"""
import importlib
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = ['MMENGINE_SAFE_GLOBALS', 'allow_mmengine_checkpoints', 'history_buffer_method', 'safe_global_names']

_STATISTICS = ('min', 'max', 'mean', 'current')


def history_buffer_method(owner: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` while unpickling: resolves only ``HistoryBuffer.<statistics method>``."""
    if owner is HistoryBuffer and name in _STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'weights_only load: getattr({owner!r}, {name!r}) is not allowed; mmseg_ext allows '
                                 f'only HistoryBuffer.{{{",".join(_STATISTICS)}}}')


def _numpy_globals() -> List[Any]:
    multiarray = importlib.import_module('numpy._core.multiarray' if np.__version__ >= '2' else 'numpy.core.multiarray')
    out: List[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    dtypes = getattr(np, 'dtypes', None)  # numpy >= 1.25 builds a dtype's state on its class, e.g. Float64DType
    for name in ('Float64DType', 'Float32DType', 'Int64DType', 'Int32DType', 'BoolDType'):
        if dtypes is not None and hasattr(dtypes, name):
            out.append(getattr(dtypes, name))
    return out


MMENGINE_SAFE_GLOBALS: List[Union[Any, Tuple[Callable, str]]] = [
    HistoryBuffer, (history_buffer_method, 'builtins.getattr'), *_numpy_globals()]


def safe_global_names() -> List[str]:
    """The ``module.name`` paths :data:`MMENGINE_SAFE_GLOBALS` makes loadable."""
    return [g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}' for g in MMENGINE_SAFE_GLOBALS]


def allow_mmengine_checkpoints() -> None:
    """Add :data:`MMENGINE_SAFE_GLOBALS` to torch's ``weights_only`` allow-list (idempotent)."""
    torch.serialization.add_safe_globals(MMENGINE_SAFE_GLOBALS)
