"""Shared test helpers (not a test module)."""
import os
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]  # the repository


def subprocess_env(**extra: str) -> dict:
    """The environment for a child Python process: this checkout first on PYTHONPATH, plus ``extra``."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    return dict(os.environ, PYTHONPATH=path, **extra)


def timm_reference(name: str, **kwargs) -> nn.Module:
    """The oracle: timm's built-in DLA from ``timm.models.dla`` itself (the registry may hold ours via timm_ext)."""
    import timm.models.dla as timm_dla

    return getattr(timm_dla, name)(**kwargs)


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


