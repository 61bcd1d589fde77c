"""Running mmengine's distributed training on CPU processes (gloo): what the DDP test and CPU users need.

mmengine 0.10 always passes ``device_ids=[LOCAL_RANK]`` to its DDP wrapper and keeps SyncBN in distributed runs;
torch rejects both for CPU modules. :func:`adapt_config_for_cpu` makes a config runnable there, explicitly and logged.
"""
import logging
from typing import Any, List, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS  # the root registry: mmengine's Runner looks wrappers up there

__all__ = ['DeviceAwareDDP', 'adapt_config_for_cpu', 'init_cpu_process_group', 'prepare_launcher']


@MODEL_WRAPPERS.register_module()
class DeviceAwareDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that drops ``device_ids`` when the module lives on the CPU (torch requires it)."""

    def __init__(self, module: torch.nn.Module, device_ids: Optional[List[int]] = None, **kwargs: Any):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def _sync_bn_to_bn(node: Any) -> int:
    """Replace every ``type='SyncBN'`` norm config below ``node`` by BN, in place; return how many."""
    n = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            n += 1
        for v in node.values():
            n += _sync_bn_to_bn(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            n += _sync_bn_to_bn(v)
    return n


def adapt_config_for_cpu(cfg: Config) -> List[str]:
    """Make a distributed config run on CPU processes; returns one line per change made (empty on GPU machines).

    Without CUDA: the 'nccl' backend becomes 'gloo'; SyncBN becomes BN (torch's SyncBatchNorm syncs only GPU
    tensors; each process then normalises its own batch); the model wrapper becomes :class:`DeviceAwareDDP`.
    """
    if torch.cuda.is_available():
        return []
    changes = []
    env = cfg.setdefault('env_cfg', {})
    dist_cfg = env.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
        changes.append("env_cfg.dist_cfg.backend: 'nccl' -> 'gloo' (no CUDA)")
    n = _sync_bn_to_bn(cfg.model)
    if n:
        changes.append(f"model: {n} SyncBN norm_cfg(s) -> BN (torch's SyncBatchNorm needs GPU tensors)")
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
        cfg.model_wrapper_cfg = dict(wrapper, type='DeviceAwareDDP')
        changes.append("model_wrapper_cfg.type: 'DeviceAwareDDP' (DDP without device_ids on CPU)")
    return changes


def init_cpu_process_group(cfg: Config) -> bool:
    """Without CUDA under ``torchrun``: start the process group here (mmengine's ``init_dist`` calls
    ``torch.cuda.set_device``); mmengine's Runner then finds it initialised and uses it. Returns True if started."""
    import torch.distributed as dist

    if torch.cuda.is_available() or dist.is_initialized() or cfg.get('launcher', 'none') != 'pytorch':
        return False
    backend = cfg.get('env_cfg', {}).get('dist_cfg', {}).get('backend', 'gloo')
    dist.init_process_group(backend=backend)
    return True


def prepare_launcher(cfg: Config) -> None:
    """For ``cfg.launcher != 'none'``: apply (and log) the CPU fallbacks, then start the process group if needed."""
    if cfg.launcher == 'none':
        return
    for change in adapt_config_for_cpu(cfg):
        print_log(f'[mmseg_ext] CPU distributed run: {change}', logger='current', level=logging.WARNING)
    init_cpu_process_group(cfg)
