"""Deformable convolution (DCNv2, modulated) for the aggregation nodes of DLA-Up."""
import math

import torch
import torch.nn as nn

__all__ = ['ModulatedDeformConv2d']


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable conv (DCNv2) on ``torchvision.ops.deform_conv2d``: no custom CUDA build.

    Offsets and masks come from a zero-initialised conv, so at initialisation it equals a plain conv with
    mask 0.5 everywhere (DCNv2's convention).
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1,
                 dilation: int = 1, bias: bool = False):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.offset_mask = nn.Conv2d(cin, 3 * kernel_size * kernel_size, kernel_size, stride, padding, dilation)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import deform_conv2d  # torchvision is needed only for deformable nodes

        o1, o2, mask = torch.chunk(self.offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                             dilation=self.dilation, mask=torch.sigmoid(mask))
