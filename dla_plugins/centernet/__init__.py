"""CenterNet "ctdet" (objects as points; Zhou, Wang, Krähenbühl 2019) in pure torch: the task heads, the decoder,
the training losses and the training targets, each proven equal to xingyizhou/CenterNet's own code by the golden
fixtures of ``tests/golden/data/ctdet`` (docs/centernet.md). The model layer: imports torch only."""
from .decode import ctdet_decode, gather_at
from .heads import CenterNetHeads
from .losses import clamped_sigmoid, ctdet_loss, focal_loss, reg_l1_loss
from .targets import ctdet_targets, draw_umich_gaussian, gaussian_radius

__all__ = ['CenterNetHeads', 'ctdet_decode', 'gather_at', 'clamped_sigmoid', 'focal_loss', 'reg_l1_loss',
           'ctdet_loss', 'ctdet_targets', 'draw_umich_gaussian', 'gaussian_radius']
