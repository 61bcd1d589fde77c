"""What ``dla-plugins export SRC`` exports: SRC is a variant, a registry name (``dlap://NAME``) or any recognised
checkpoint (timm, ucbdrive, CenterNet family, mmdetection3d, CenterNet2, ours), turned into the eval-mode module
of one export target (:data:`TARGETS`): a classifier, the backbone's six levels, a DLASeg, or a CenterNet detector
(its raw heads, or with ``decode`` CenterNet's top-K decoding in the graph)."""
import os
from typing import Optional, Tuple

import torch
import torch.nn as nn

from ..convert import convert
from ..detector import CenterNet
from ..factory import create_dla
from ..seg import DLASeg
from ..variants import resolve_variant
from .export import BackboneLevels, build_export_model

__all__ = ['TARGETS', 'DetectorOutputs', 'build_from_source']

TARGETS = ('classifier', 'backbone', 'seg', 'centernet')


class DetectorOutputs(nn.Module):
    """A :class:`~dla_plugins.CenterNet` with tuple outputs, exportable: its heads' raw maps in head order
    (``hm`` logits, ``wh``, ``reg``), or with ``decode`` :meth:`~dla_plugins.CenterNet.detect`'s boxes (B, K, 4)
    in input pixels, scores (B, K) and classes (B, K)."""

    def __init__(self, model: CenterNet, decode: bool = False, K: int = 100):
        super().__init__()
        self.model, self.decode, self.K = model, decode, K
        self.output_names = ['boxes', 'scores', 'classes'] if decode else list(model.heads.head_names)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.decode:
            return self.model.detect(x, K=self.K)
        out = self.model(x)
        return tuple(out[n] for n in self.model.heads.head_names)


def _is_variant(src: str) -> bool:
    try:
        resolve_variant(src)
    except ValueError:
        return False
    return True


def build_from_source(src: str, what: str = 'classifier', num_classes: Optional[int] = None,
                      node_type: str = 'conv', checkpoint_path: Optional[str] = None, decode: bool = False,
                      K: int = 100) -> nn.Module:
    """The eval-mode module to export for ``what`` from ``src`` (module doc).

    A variant builds a fresh network (``checkpoint_path`` loads into it as the builders do; ``node_type``,
    ``num_classes`` apply). A file or ``dlap://`` name is recognised and converted (:func:`~dla_plugins.convert`):
    a whole network (DLASeg, CenterNet) exports as itself or its backbone; a classifier file as itself, its
    backbone, or the backbone of a fresh DLASeg/CenterNet.

    Raises:
        ValueError: unknown ``what``, or a ``what`` the file cannot give (the message lists what it can).
    """
    if what not in TARGETS:
        raise ValueError(f'what: unknown export target {what!r}; allowed: {list(TARGETS)}')
    if _is_variant(src):
        variant = resolve_variant(src).name
        if what == 'centernet':
            heads = None if num_classes is None else {'hm': num_classes, 'wh': 2, 'reg': 2}
            model = CenterNet(variant, heads=heads, node_type=node_type, checkpoint_path=checkpoint_path)
            return DetectorOutputs(model, decode, K).eval()
        return build_export_model(variant, what, num_classes, node_type, checkpoint_path)
    for name, value in (('checkpoint_path', checkpoint_path), ('num_classes', num_classes)):
        if value is not None:  # a file brings its own weights and classes
            raise ValueError(f'{name}: only with a variant as the source, got source {src!r}')
    if not src.startswith('dlap://') and not os.path.exists(src):
        raise FileNotFoundError(f'source: {src!r} is neither a variant, a dlap:// name nor a file')
    conv = convert(src)
    builder, kwargs = conv.host_options['builder'], conv.host_options['kwargs']
    built = {'create_dla': create_dla, 'DLASeg': DLASeg, 'CenterNet': CenterNet}[builder](conv.variant, **kwargs)
    built.load_state_dict(conv.state, strict=True)
    return _target_of(built, builder, what, src, node_type, decode, K).eval()


def _target_of(built: nn.Module, builder: str, what: str, src: str, node_type: str, decode: bool,
               K: int) -> nn.Module:
    """The ``what`` module from a network ``builder`` built from ``src``."""
    if what == 'backbone':
        if builder == 'create_dla':
            built.reset_classifier(0)
        return BackboneLevels(built if builder == 'create_dla' else built.backbone)
    if builder == 'create_dla' and what != 'classifier':  # the file's DLA under a fresh DLA-Up and heads
        built.reset_classifier(0)
        net = DLASeg(built, num_classes=19, node_type=node_type) if what == 'seg' else \
            CenterNet(built, node_type=node_type)
        return DetectorOutputs(net, decode, K) if what == 'centernet' else net
    own = {'create_dla': 'classifier', 'DLASeg': 'seg', 'CenterNet': 'centernet'}[builder]
    if what != own:
        raise ValueError(f'what: {what!r} for {src}, a {builder} checkpoint; allowed: {[own, "backbone"]}')
    return DetectorOutputs(built, decode, K) if what == 'centernet' else built
