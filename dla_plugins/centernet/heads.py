"""CenterNet's task heads: one small branch per output on the stride-4 features, with CenterNet's module names and
initialisation, so the head keys of CenterNet checkpoints (``hm.0.weight``, ``hm.2.bias``, ``wh.0.weight``, ...)
load by name."""
from typing import Dict, Mapping

import torch
from torch import nn

from ._checks import check_int

HM_BIAS = -2.19  # CenterNet's heatmap prior: sigmoid(-2.19) ~ 0.1


class CenterNetHeads(nn.Module):
    """``heads`` maps an output name to its channel count, e.g. ``{'hm': num_classes, 'wh': 2, 'reg': 2}``.

    With ``head_conv > 0`` a head is ``Sequential(Conv2d(in, head_conv, 3, padding=1), ReLU, Conv2d(head_conv,
    channels, final_kernel, padding=final_kernel // 2))``, else a single ``Conv2d(in, channels, final_kernel)``.
    Convolutions keep PyTorch's default initialisation, built head by head in ``heads`` order (the order CenterNet
    draws them in); a head whose name contains ``'hm'`` gets its last bias filled with -2.19, every other head gets
    zero biases. ``forward`` returns ``{name: map}`` (``hm`` as logits).
    """

    def __init__(self, in_channels: int, heads: Mapping[str, int], head_conv: int = 256, final_kernel: int = 1):
        super().__init__()
        check_int('in_channels', in_channels, 1, 'an int >= 1')
        check_int('head_conv', head_conv, 0, 'an int >= 0 (0: one conv per head)')
        check_int('final_kernel', final_kernel, 1, 'an odd int >= 1')
        if final_kernel % 2 == 0:
            raise ValueError(f'final_kernel: {final_kernel!r}; allowed: an odd int >= 1')
        if not isinstance(heads, Mapping) or not heads:
            raise ValueError(f"heads: {heads!r}; allowed: a non-empty mapping name -> channels, e.g. "
                             "{'hm': 80, 'wh': 2, 'reg': 2}")
        for name, channels in heads.items():
            if not isinstance(name, str) or not name.isidentifier() or hasattr(nn.Module, name):
                raise ValueError(f'heads: name {name!r}; allowed: a Python identifier that is no nn.Module attribute')
            check_int(f'heads[{name!r}]', channels, 1, 'an int >= 1')
        self.channels = dict(heads)
        self.head_names = list(heads)
        pad = final_kernel // 2
        for name, channels in heads.items():
            if head_conv > 0:
                head: nn.Module = nn.Sequential(
                    nn.Conv2d(in_channels, head_conv, kernel_size=3, padding=1, bias=True),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(head_conv, channels, kernel_size=final_kernel, padding=pad, bias=True))
            else:
                head = nn.Conv2d(in_channels, channels, kernel_size=final_kernel, padding=pad, bias=True)
            convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
            if 'hm' in name:
                nn.init.constant_(convs[-1].bias, HM_BIAS)
            else:
                for conv in convs:
                    nn.init.zeros_(conv.bias)
            self.add_module(name, head)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x) for name in self.head_names}
