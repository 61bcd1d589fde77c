"""Nothing lost in mmengine runs: atomic checkpoint files, a resume that survives a torn ``last_checkpoint`` pointer,
and a stop on non-finite losses or weights before anything is saved.

- ``AtomicLocalBackend`` (mmengine file backend ``'dlap_atomic'``): ``CheckpointHook(backend_args=dict(backend=
  'dlap_atomic'))`` writes every ``iter_N.pth``/``best_*.pth`` through :func:`dla_plugins.files.save_atomic`.
  mmengine writes the file with ``backend.put`` (``runner.checkpoint.save_checkpoint``), so this is its public
  extension point. The ``last_checkpoint`` pointer is written by the hook itself with a plain ``open``:
  :func:`latest_checkpoint` therefore does not trust it blindly.
- ``FiniteLossHook``: raises ``FloatingPointError`` naming the iteration and the loss when the loss is not finite
  (before ``CheckpointHook`` runs for that iteration) and refuses to save non-finite weights. mmengine's own
  ``CheckInvalidLossHook`` only asserts, every 50 iterations by default, without the value.

``python -m mmseg_ext.train`` sets both up (:func:`protect_config`).
"""
import glob
import os.path as osp
import re
from pathlib import Path
from typing import Any, Optional, Union

from mmengine.config import Config
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from dla_plugins.files import non_finite_keys, save_atomic

__all__ = ['AtomicLocalBackend', 'FiniteLossHook', 'latest_checkpoint', 'protect_config', 'ATOMIC_BACKEND']

ATOMIC_BACKEND = 'dlap_atomic'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic (temporary file, fsync, rename)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        save_atomic(bytes(obj), filepath)

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        Path(filepath).parent.mkdir(parents=True, exist_ok=True)
        save_atomic(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training on a non-finite loss (every iteration) and never save non-finite weights.

    Runs before ``CheckpointHook`` (priority ``ABOVE_NORMAL`` vs ``VERY_LOW``), so the iteration whose loss is not
    finite writes no checkpoint; the exception ends ``Runner.train``.
    """

    priority = 'ABOVE_NORMAL'

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None, outputs: Optional[dict] = None
                         ) -> None:
        loss = (outputs or {}).get('loss')
        if loss is None:
            return
        value = float(loss.detach() if hasattr(loss, 'detach') else loss)
        if value != value or value in (float('inf'), float('-inf')):
            last = latest_checkpoint(runner.work_dir)
            raise FloatingPointError(f'loss is {value} at iteration {runner.iter + 1}; stopped before saving, '
                                     f'{last or "no earlier checkpoint"} is kept')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = non_finite_keys(checkpoint.get('state_dict', {}))
        if bad:
            raise FloatingPointError(f'iteration {runner.iter}: non-finite weights ({len(bad)} tensors, first '
                                     f'{bad[0]!r}); not saved, {latest_checkpoint(runner.work_dir) or "nothing"} '
                                     f'is kept')


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint named by ``work_dir/last_checkpoint`` when that file names an existing file, else the newest
    ``iter_N.pth``/``epoch_N.pth`` in ``work_dir`` (a kill while mmengine rewrites the pointer leaves it empty)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named and osp.isfile(named):
            return named
    numbered = [(int(m.group(2)), m.group(1) == 'iter', p) for p in glob.glob(osp.join(work_dir, '*_*.pth'))
                if (m := re.fullmatch(r'(iter|epoch)_(\d+)\.pth', osp.basename(p)))]
    return max(numbered)[2] if numbered else None


def protect_config(cfg: Config) -> Config:
    """Add :class:`FiniteLossHook` and make the ``CheckpointHook`` write through :class:`AtomicLocalBackend` (unless
    the config names its own backend); returns ``cfg``."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('FiniteLossHook', FiniteLossHook) for h in hooks):
        hooks.append(dict(type='FiniteLossHook'))
    cfg.custom_hooks = hooks
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint is None or '://' in str(checkpoint.get('out_dir') or ''):
        return cfg
    if checkpoint.get('backend_args') is None and checkpoint.get('file_client_args') is None:
        checkpoint['backend_args'] = dict(backend=ATOMIC_BACKEND)
    return cfg

