"""``create_from_weights``: the model a registry file loads into (a builder: above :mod:`.factory` and :mod:`.seg`)."""
from typing import Any, Union

import torch.nn as nn

from .detector import CenterNet
from .factory import create_dla
from .seg import DLASeg
from .weights import WeightEntry, get

__all__ = ['create_from_weights']


def create_from_weights(name: Union[str, WeightEntry], **overrides: Any) -> nn.Module:
    """The model registry file ``name`` (or its entry) loads into, without its weights:
    ``create_dla(variant, **model_kwargs)``, ``DLASeg(variant, **model_kwargs)`` or ``CenterNet(...)`` (ctdet files)
    (:attr:`~dla_plugins.weights.WeightEntry.builds`), ``overrides`` applied.

    Raises:
        ValueError: unknown name (the message lists every known name).
    """
    entry = name if isinstance(name, WeightEntry) else get(name)
    kwargs = {**dict(entry.model_kwargs), **overrides}
    if entry.builds in ('DLASeg', 'CenterNet'):
        return (DLASeg if entry.builds == 'DLASeg' else CenterNet)(entry.variant, **kwargs)
    return create_dla(entry.variant, **kwargs)
