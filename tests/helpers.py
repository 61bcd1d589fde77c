"""Shared test helpers (not a test module)."""
import os
from pathlib import Path

import torch
import torch.nn as nn

from dla_plugins.tools.bench import timm_reference  # noqa: F401  (the one reference builder: timm's own DLA)

ROOT = Path(__file__).resolve().parents[1]  # the repository


def subprocess_env(**extra: str) -> dict:
    """The environment for a child Python process: this checkout first on PYTHONPATH, plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    return dict(os.environ, PYTHONPATH=path, **extra)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, so eval comparisons mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def to_ucbdrive_layout(state_dict: dict, model: nn.Module) -> dict:
    """Rewrite a timm-layout state_dict into ucbdrive/dla's layout, following ucbdrive's Tree rules.

    ucbdrive's Tree builds ``project`` (1x1 conv + BN) whenever in != out channels, also for trees deeper than 1
    (where forward never uses it); its checkpoints predate ``num_batches_tracked``.
    """
    from dla_plugins.backbone import HDATree

    out = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
    g = torch.Generator().manual_seed(1)
    for name, tree in model.named_modules():
        if isinstance(tree, HDATree) and tree.depth > 1 and tree.in_channels != tree.out_channels:
            cin, cout = tree.in_channels, tree.out_channels
            out[f'{name}.project.0.weight'] = torch.randn(cout, cin, 1, 1, generator=g)
            out[f'{name}.project.1.weight'] = torch.rand(cout, generator=g)
            out[f'{name}.project.1.bias'] = torch.randn(cout, generator=g)
            out[f'{name}.project.1.running_mean'] = torch.randn(cout, generator=g)
            out[f'{name}.project.1.running_var'] = torch.rand(cout, generator=g) + 0.5
    return out
