"""Checkpoint files: reading safetensors or ``weights_only`` torch pickles (unwrapped to a flat state_dict) with an
accurate message for every unreadable file, and writing atomically (a kill never leaves a half-written file)."""
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch

__all__ = ['CheckpointError', 'StateDict', 'WEIGHTS_SCHEME', 'weights_name', 'local_path', 'read_checkpoint',
           'read_state_dict', 'unwrap_state_dict', 'save_atomic',
           'non_finite_keys', 'SAVE_PAUSE_ENV', 'NamedFiles', 'provide_named_files', 'named_files', 'Opaque',
           'HOST_GLOBALS']

StateDict = Dict[str, torch.Tensor]
_WRAPPER_KEYS = ('state_dict', 'model', 'state_dict_ema', 'model_ema', 'model_state')
WEIGHTS_SCHEME = 'dlap://'
"""``'dlap://NAME'`` names a file of the weights registry (:mod:`dla_plugins.weights`) wherever a path is accepted."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not match the model; the message lists every offending key."""


def weights_name(path: Any) -> Optional[str]:
    """NAME of a ``'dlap://NAME'`` string, else None."""
    if isinstance(path, str) and path.startswith(WEIGHTS_SCHEME):
        return path[len(WEIGHTS_SCHEME):]
    return None


class NamedFiles(NamedTuple):
    """What turns ``'dlap://NAME'`` into a file (registered by :mod:`dla_plugins.weights`, a higher layer, so that
    reading never imports upwards)."""

    resolve: Callable[[str], str]
    """``'dlap://NAME'`` -> the local path (fetched, verified, cached)."""
    load_line: Callable[[str, int, Sequence[str], str], str]
    """``(NAME, tensors loaded, keys skipped, into)`` -> the one line a load of NAME logs."""


_NAMED_FILES: List[NamedFiles] = []


def provide_named_files(provider: NamedFiles) -> None:
    """Install what resolves ``'dlap://NAME'`` (:mod:`dla_plugins.weights` does, on import)."""
    _NAMED_FILES[:] = [provider]


def named_files() -> NamedFiles:
    """The installed provider of ``'dlap://NAME'`` files."""
    if not _NAMED_FILES:  # importing dla_plugins imports dla_plugins.weights, which installs it
        raise RuntimeError(f'{WEIGHTS_SCHEME}NAME: no weights registry installed (import dla_plugins.weights)')
    return _NAMED_FILES[0]


def local_path(path: Union[str, os.PathLike]) -> str:
    """``path`` as a local file name: a ``'dlap://NAME'`` is fetched (verified, cached) by
    :func:`dla_plugins.weights.resolve`; anything else is returned as it is."""
    if weights_name(path) is None:
        return os.fspath(path)
    return named_files().resolve(path)


def read_checkpoint(path: Union[str, os.PathLike]) -> Any:
    """The object stored in a safetensors or torch file (or registry file ``'dlap://NAME'``), read with
    ``weights_only=True`` (no code runs).

    Raises:
        CheckpointError: the file is missing, empty, truncated or corrupt, not a checkpoint, or holds pickled code;
            the message says which.
        WeightsError: a ``dlap://`` name that cannot be fetched (the message lists every source tried).
    """
    path = local_path(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint: no such file {path!r}')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file

            return load_file(path, device='cpu')
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # torch/safetensors raise many types for corrupt, truncated or pickled-code files
        if _host_globals_only(e):
            return _load_with_inert_host_objects(path)
        raise CheckpointError(f'checkpoint: cannot read {path!r}: {_why_unreadable(path, e)}') from None


class Opaque:
    """A non-tensor object a host framework pickled into its checkpoint, read as inert data: it keeps the arguments
    and state it was pickled with and nothing else; no code of the pickled name runs (see :data:`HOST_GLOBALS`)."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return 'Opaque(...)'


HOST_GLOBALS: Tuple[str, ...] = (
    'mmengine.logging.history_buffer.HistoryBuffer',  # mmengine Runner: the MessageHub's log histories
    'builtins.getattr',  # how HistoryBuffer's statistics methods (HistoryBuffer.min, ...) are pickled
    'numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct',  # numpy arrays (numpy 1 / 2)
    'numpy.ndarray', 'numpy.dtype', 'builtins.bytes',  # bytes(): the empty data of an empty numpy array
    'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',  # numpy scalars (mmengine meta, log values)
    'numpy.dtypes.Float64DType', 'numpy.dtypes.Float32DType', 'numpy.dtypes.Int64DType', 'numpy.dtypes.Int32DType',
    'numpy.dtypes.BoolDType',  # numpy >= 1.25 pickles a dtype through its class
)
"""The only names besides torch's own that :func:`read_checkpoint` accepts in a pickle: what mmengine's Runner,
detectron2's checkpointer and ``timm_ext.train`` store next to the weights. Each is read as an :class:`Opaque` (the
name is never imported, the function never called: ``builtins.getattr`` included), so a file cannot run code
through them; only the tensors are used."""


def _host_globals_only(error: Exception) -> bool:
    """The first global torch refused (its message names it) is one of :data:`HOST_GLOBALS`."""
    found = re.search(r'GLOBAL ([\w.]+)', str(error))
    name = found.group(1) if found else ''
    return (name if '.' in name else f'builtins.{name}') in HOST_GLOBALS


def _load_with_inert_host_objects(path: str) -> Any:
    """``torch.load(weights_only=True)`` with exactly :data:`HOST_GLOBALS` allowed, each as :class:`Opaque`; the
    process's own allow-list (``add_safe_globals``) is set aside meanwhile, so no allowed name resolves to real code."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        torch.serialization.add_safe_globals([(Opaque, name) for name in HOST_GLOBALS])
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001 - as in read_checkpoint: say what is wrong with the file
        raise CheckpointError(f'checkpoint: cannot read {path!r}: {_why_unreadable(path, e)}') from None
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(saved)


def read_state_dict(path: Union[str, os.PathLike]) -> StateDict:
    """Read a safetensors or torch (``weights_only=True``) file and unwrap common containers.

    Accepted containers: a bare state_dict, or a dict holding it under one of 'state_dict', 'model',
    'state_dict_ema', 'model_ema', 'model_state' (monodle). A 'module.' prefix (DDP) is stripped from every key.
    """
    return unwrap_state_dict(read_checkpoint(path), path if weights_name(path) else os.fspath(path))


def _why_unreadable(path: str, error: Exception) -> str:
    """What is true about a file torch/safetensors refused, from its first bytes and the error; torch's own text
    (which suggests ``weights_only=False``, i.e. running the file's code) is never repeated."""
    with open(path, 'rb') as f:
        head = f.read(16)
    msg = str(error)
    if not head:
        return 'the file is empty'
    if path.endswith('.safetensors'):
        if len(head) >= 9 and head[8:9] == b'{':
            return f'the safetensors file is truncated or corrupt ({msg})'
        return 'not a safetensors file (no JSON header after the 8-byte length)'
    is_zip, is_pickle = head.startswith(b'PK\x03\x04'), head[:1] == b'\x80' and head[1:2] in b'\x02\x03\x04\x05'
    found = re.search(r'GLOBAL ([\w.]+)', msg)
    if found:
        return (f'it contains pickled Python objects ({found.group(1)}), which could run code when loaded; '
                f'only tensors, numbers, strings and containers are read')
    if is_pickle and 'Weights only load failed' in msg:
        op = re.search(r'(Unsupported operand \d+|Unsupported class [\w.]+)', msg)
        return (f'it is a pickle using instructions a tensors-only reader refuses ({op.group(1) if op else "unknown"})'
                f'; re-save it with torch.save from a state_dict of tensors')
    if is_zip and not _zip_has_data_pkl(path):
        return 'a zip archive, but not a torch checkpoint (no data.pkl inside)'
    if is_zip or is_pickle:
        detail = msg.split('. ')[0].strip() or type(error).__name__
        return f'the file is truncated or corrupt ({detail})'
    return f'not a checkpoint (neither a torch file nor safetensors; it starts with {head[:8]!r})'


def _zip_has_data_pkl(path: str) -> bool:
    """True when the zip's directory is readable and names a torch ``*/data.pkl`` (or is unreadable: corrupt)."""
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith('data.pkl') for name in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return True


def unwrap_state_dict(obj: object, source: str) -> StateDict:
    """Find the state_dict inside a checkpoint container and strip a DDP 'module.' prefix."""
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'checkpoint: {source} does not hold a state_dict of tensors')
    out: StateDict = {}
    for k, v in obj.items():
        out[k[len('module.'):] if k.startswith('module.') else k] = v
    return out


SAVE_PAUSE_ENV = 'DLA_PLUGINS_TEST_SAVE_PAUSE'
"""Test hook: seconds :func:`save_atomic` sleeps between the finished temporary file and the rename (a test kills
the writer there; the previous checkpoint must survive)."""


def save_atomic(obj: Any, path: Union[str, os.PathLike]) -> Path:
    """Write ``obj`` to ``path`` atomically: a temporary file in the same directory, flushed and fsynced, renamed
    over ``path`` (``os.replace``), then the directory fsynced. A kill at any point leaves either the previous file
    or the new one, never a partial one (a stale ``.NAME.*.tmp`` may remain; it is never read).

    ``*.safetensors`` paths get ``safetensors.torch.save(obj)`` (a flat dict of tensors), ``bytes`` are written as
    they are, anything else goes through ``torch.save``.
    """
    path = Path(path)
    if isinstance(obj, bytes):
        data = obj
    elif path.suffix == '.safetensors':
        from safetensors.torch import save

        data = save(obj)
    else:
        data = None
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # what open() would have given (mkstemp makes it 0600)
        with os.fdopen(fd, 'wb') as f:
            if data is None:
                torch.save(obj, f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        pause = float(os.environ.get(SAVE_PAUSE_ENV, '0') or 0)
        if pause > 0:
            time.sleep(pause)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself reaches the disk
    finally:
        os.close(dir_fd)
    return path


def non_finite_keys(state_dict: Mapping[str, Any]) -> List[str]:
    """Keys of the floating-point tensors in ``state_dict`` holding a NaN or an infinity."""
    return [k for k, v in state_dict.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
