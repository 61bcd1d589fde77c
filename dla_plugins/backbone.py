"""The DLA backbone/classifier: HDA trees (Eq. 2, Fig. 1f) joined by IDA level roots (Eq. 5)."""
import math
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .layers import BLOCKS, AggregationNode, NormLayer, get_norm_layer
from .variants import DLAVariant, resolve_variant

__all__ = ['DLA', 'HDATree', 'GlobalPool', 'feature_take_indices', 'STAGES', 'NUM_LEVELS']

NUM_LEVELS = 6
# The stage table both host adapters freeze by (ResNet's meaning): stage 0 is the stem (everything at stride <= 2),
# stage k >= 1 is level{k+1} (strides 4, 8, 16, 32 as ResNet's res2..res5). detectron2's ``freeze_at=k`` freezes
# stages 0..k-1; mmseg's ``frozen_stages=k`` freezes stages 0..k.
STAGES = (('base_layer', 'level0', 'level1'), ('level2',), ('level3',), ('level4',), ('level5',))
# torch has no public "is FX symbolically tracing" query (torch.compiler.is_compiling covers Dynamo only); the private
# one is read here, in one place, so input checks can step aside while FX traces.
_fx = torch.fx._symbolic_trace
_is_fx_symbolic_tracing = getattr(_fx, 'is_fx_symbolic_tracing', _fx.is_fx_tracing)
MIN_INPUT_SIZE = 16
_POOLS = ('', 'avg', 'max', 'avgmax', 'catavgmax')


class GlobalPool(nn.Module):
    """Global pooling to N x C x 1 x 1: 'avg', 'max', 'avgmax' (mean of both), 'catavgmax' (2C) or '' (none)."""

    def __init__(self, pool_type: str = 'avg'):
        super().__init__()
        if pool_type not in _POOLS:
            raise ValueError(f"global_pool: unknown pooling {pool_type!r}; allowed: {list(_POOLS)}")
        self.pool_type = pool_type

    def feat_mult(self) -> int:
        return 2 if self.pool_type == 'catavgmax' else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == 'avg':
            return x.mean((2, 3), keepdim=True)
        if self.pool_type == 'max':
            return x.amax((2, 3), keepdim=True)
        if self.pool_type == 'avgmax':
            return 0.5 * (x.mean((2, 3), keepdim=True) + x.amax((2, 3), keepdim=True))
        if self.pool_type == 'catavgmax':
            return torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], 1)
        return x


def feature_take_indices(num_features: int, indices: Optional[Union[int, Sequence[int]]] = None
                         ) -> Tuple[List[int], int]:
    """Normalise ``indices`` (None: all; int n: last n; sequence: those, negatives from the end)."""
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ValueError(f'indices: last-n must be in 1..{num_features}, got {indices}')
        take = list(range(num_features - indices, num_features))
    else:
        take = []
        for i in indices:
            j = i + num_features if i < 0 else i
            if not 0 <= j < num_features:
                raise ValueError(f'indices: {i} is out of range for {num_features} levels')
            take.append(j)
    return take, max(take)


class HDATree(nn.Module):
    """Hierarchical deep aggregation tree of depth ``depth`` (Eq. 2).

    A depth-1 tree holds two blocks merged by an aggregation node; a deeper tree holds two subtrees, and the right
    subtree's node also receives the left subtree's output (Fig. 1f: the parent node is merged with the left child).
    With ``level_root`` the tree is a level's root: its node also aggregates the downsampled input of the level
    (IDA, Eq. 5). Module names and order match timm's ``DlaTree`` so state_dicts are interchangeable.
    """

    def __init__(self, depth: int, block: str, cin: int, cout: int, stride: int = 1, dilation: int = 1,
                 level_root: bool = False, root_dim: int = 0, residual_root: bool = False, first: bool = True,
                 norm_layer: NormLayer = nn.BatchNorm2d, **block_args: Any):
        super().__init__()
        root_dim = root_dim or 2 * cout
        if level_root:
            root_dim += cin
        # ceil_mode keeps the max-pooled shortcut the same size as the strided conv for odd sizes.
        self.downsample = nn.MaxPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.project: nn.Module = nn.Identity()
        self.level_root = level_root
        self.depth = depth
        self.in_channels, self.out_channels = cin, cout
        common = dict(dilation=dilation, norm_layer=norm_layer, **block_args)
        if depth == 1:
            block_cls = BLOCKS[block]
            self.tree1 = block_cls(cin, cout, stride, first=first, **common)
            self.tree2 = block_cls(cout, cout, 1, **common)
            if cin != cout:
                self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), norm_layer(cout))
            self.root: Optional[AggregationNode] = AggregationNode(
                root_dim, cout, 1, residual=residual_root, norm_layer=norm_layer)
        else:
            sub = dict(residual_root=residual_root, **common)
            self.tree1 = HDATree(depth - 1, block, cin, cout, stride, first=first, **sub)
            self.tree2 = HDATree(depth - 1, block, cout, cout, 1, root_dim=root_dim + cout, first=False, **sub)
            self.root = None

    def forward(self, x: torch.Tensor, shortcut: Optional[torch.Tensor] = None,
                children: Optional[List[torch.Tensor]] = None) -> torch.Tensor:
        kids: List[torch.Tensor] = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            kids = kids + [bottom]
        x1 = self.tree1(x, self.project(bottom))
        if self.root is not None:
            return self.root([self.tree2(x1), x1] + kids)
        return self.tree2(x1, None, kids + [x1])


@contextmanager
def _frozen_norm_stats(*modules: nn.Module) -> Iterator[None]:
    """Restore BatchNorm running statistics on exit: a checkpoint recomputation must not count a batch twice."""
    saved = [(b, b.detach().clone()) for mod in modules for m in mod.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) for b in m.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def _checkpointed(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """Run ``modules`` in sequence under non-reentrant activation checkpointing."""
    def run(t: torch.Tensor) -> torch.Tensor:
        for mod in modules:
            t = mod(t)
        return t

    return checkpoint(run, x, use_reentrant=False, context_fn=lambda: (nullcontext(), _frozen_norm_stats(*modules)))


class DLA(nn.Module):
    """Deep Layer Aggregation (Yu et al., CVPR 2018): classifier or headless multi-level backbone.

    Levels 0-1 are plain conv levels (as in DRN); levels 2-5 are HDA trees whose roots aggregate the previous
    level (IDA). ``output_stride`` 16 or 8 replaces the stride of level5 (and level4) by dilation (§4.2).

    Args:
        levels: Convs of level0/level1, then tree depths of level2..level5.
        channels: Output channels of level0..level5.
        block: 'basic', 'bottleneck' or 'res2'.
        cardinality: Groups of the 3x3 convs in bottlenecks (32/64 for the split variants).
        base_width: Width per group (timm convention).
        residual_root: Residual aggregation nodes (Eq. 4).
        res2_scale: Scale of the Res2Net bottleneck.
        num_classes: Classifier outputs; 0 for a headless backbone (no ``fc``).
        in_chans: Input channels.
        output_stride: 32, 16 or 8.
        global_pool: '', 'avg', 'max', 'avgmax' or 'catavgmax'.
        norm_layer: 'bn', 'syncbn', 'frozenbn', 'gn' or a ``channels -> module`` callable.
        drop_rate: Dropout before the classifier.
    """

    def __init__(self, levels: Sequence[int], channels: Sequence[int], block: str = 'bottleneck',
                 cardinality: int = 1, base_width: int = 64, residual_root: bool = False, res2_scale: int = 4,
                 num_classes: int = 1000, in_chans: int = 3, output_stride: int = 32, global_pool: str = 'avg',
                 norm_layer: Union[str, NormLayer, None] = None, drop_rate: float = 0.0):
        super().__init__()
        if len(levels) != NUM_LEVELS or len(channels) != NUM_LEVELS:
            raise ValueError(f'levels/channels: need {NUM_LEVELS} entries each, got {len(levels)} and {len(channels)}')
        if block not in BLOCKS:
            raise ValueError(f"block: unknown block {block!r}; allowed: {sorted(BLOCKS)}")
        if output_stride not in (8, 16, 32):
            raise ValueError(f'output_stride: must be 32, 16 or 8, got {output_stride!r}')
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f'in_chans: must be a positive integer, got {in_chans!r}')
        if not 0.0 <= drop_rate < 1.0:  # also refuses NaN
            raise ValueError(f'drop_rate: must be in [0, 1), got {drop_rate!r}')
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f'num_classes: must be an integer >= 0, got {num_classes!r}')
        norm = get_norm_layer(norm_layer)
        self.levels, self.channels = tuple(levels), tuple(channels)
        self.num_classes, self.in_chans, self.output_stride = num_classes, in_chans, output_stride
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.base_layer = nn.Sequential(
            nn.Conv2d(in_chans, channels[0], 7, 1, padding=3, bias=False), norm(channels[0]), nn.ReLU(inplace=True))
        self.level0 = self._conv_level(channels[0], channels[0], levels[0], 1, norm)
        self.level1 = self._conv_level(channels[0], channels[1], levels[1], 2, norm)
        block_args: Dict[str, Any] = dict(cardinality=cardinality, base_width=base_width, residual_root=residual_root,
                                          norm_layer=norm)
        if block == 'res2':
            block_args['scale'] = res2_scale
        reduction, dilation = 2, 1
        self.feature_info = [dict(num_chs=channels[0], reduction=1, module='level0'),
                             dict(num_chs=channels[1], reduction=2, module='level1')]
        for i in range(2, NUM_LEVELS):
            stride = 2
            if reduction * 2 > output_stride:
                stride, dilation = 1, dilation * 2
            reduction *= stride
            tree = HDATree(levels[i], block, channels[i - 1], channels[i], stride, dilation, level_root=i > 2,
                           **block_args)
            self.add_module(f'level{i}', tree)
            self.feature_info.append(dict(num_chs=channels[i], reduction=reduction, module=f'level{i}'))

        self.num_features = channels[-1]
        self.global_pool = GlobalPool(global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()  # width of forward_head(pre_logits)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc = self._make_fc(num_classes)
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self._init_weights()

    @classmethod
    def from_variant(cls, variant: Union[str, DLAVariant], **kwargs: Any) -> 'DLA':
        v = resolve_variant(variant)
        model = cls(v.levels, v.channels, v.block, cardinality=v.cardinality, base_width=v.base_width,
                    residual_root=v.residual_root, res2_scale=v.res2_scale, **kwargs)
        model.variant = v.name
        return model

    @staticmethod
    def _conv_level(cin: int, cout: int, convs: int, stride: int, norm: NormLayer) -> nn.Sequential:
        mods: List[nn.Module] = []
        for i in range(convs):
            mods += [nn.Conv2d(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, padding=1, bias=False),
                     norm(cout), nn.ReLU(inplace=True)]
        return nn.Sequential(*mods)

    def _make_fc(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        return nn.Conv2d(self.num_features * self.global_pool.feat_mult(), num_classes, 1, bias=True)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if isinstance(self.fc, nn.Conv2d):  # small logits at the start of training
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)

    # --- timm-style model API -------------------------------------------------------------------------------------
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(stem=r'^base_layer', blocks=r'^level(\d+)' if coarse else [
            (r'^level(\d+)\.tree(\d+)', None), (r'^level(\d+)\.root', (2,)), (r'^level(\d+)', (1,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each level in the backward pass (same outputs/grads; BN statistics are updated once)."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        device = next(self.parameters()).device
        self.num_classes = num_classes
        self.global_pool = GlobalPool(global_pool)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.fc = self._make_fc(num_classes).to(device)
        if isinstance(self.fc, nn.Conv2d):
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        if _is_fx_symbolic_tracing():
            return
        if x.dim() != 4:
            raise ValueError(f'x: expected a 4-D N x C x H x W batch, got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_chans:
            raise ValueError(f'x: model built with in_chans={self.in_chans}, got {x.shape[1]} input channels')
        if x.shape[-2] < MIN_INPUT_SIZE or x.shape[-1] < MIN_INPUT_SIZE:
            raise ValueError(f'x: images must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} (smaller ones leave '
                             f'level4/level5 only padding to aggregate), got {x.shape[-2]}x{x.shape[-1]}')

    def _levels(self, x: torch.Tensor, last: int = NUM_LEVELS - 1) -> List[torch.Tensor]:
        """The one levels path behind ``forward_features`` and ``forward_intermediates``: stem and levels 0..last."""
        if torch.jit.is_scripting():
            return self._levels_scripted(x)
        return self._levels_py(x, last)

    def _levels_scripted(self, x: torch.Tensor) -> List[torch.Tensor]:
        # TorchScript cannot look modules up by name: all six levels, written out.
        x0 = self.level0(self.base_layer(x))
        x1 = self.level1(x0)
        x2 = self.level2(x1)
        x3 = self.level3(x2)
        x4 = self.level4(x3)
        return [x0, x1, x2, x3, x4, self.level5(x4)]

    @torch.jit.unused
    def _levels_py(self, x: torch.Tensor, last: int) -> List[torch.Tensor]:
        """Levels 0..last, each checkpointed (recomputed in the backward pass) when enabled and grads are on.

        The full-resolution stem is recomputed together with level0 (measured: less peak memory than storing the
        stem's output as a segment boundary).
        """
        ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        out: List[torch.Tensor] = []
        for i in range(last + 1):
            mods = [self.base_layer, self.level0] if i == 0 else [getattr(self, f'level{i}')]
            if ckpt:
                x = _checkpointed(x, *mods)
            else:
                for mod in mods:
                    x = mod(x)
            out.append(x)
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting():
            self._check_input(x)
        return self._levels(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        if pre_logits:
            return self.flatten(x)
        return self.flatten(self.fc(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, List[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False
                              ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Run the backbone and return the outputs of the chosen levels (0-5: strides 1..32, or as dilated).

        Args:
            indices: None for all levels, n for the last n, or a list of level indices.
            norm: Accepted for timm compatibility (DLA has no final norm).
            stop_early: Stop after the deepest requested level.
            output_fmt: Only 'NCHW'.
            intermediates_only: Return only the list of level outputs.
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt: only 'NCHW' is supported, got {output_fmt!r}")
        take, max_index = feature_take_indices(NUM_LEVELS, indices)
        self._check_input(x)
        levels = self._levels(x, max_index if stop_early else NUM_LEVELS - 1)
        feats = [levels[i] for i in take]
        if intermediates_only:
            return feats
        return levels[-1], feats

    def stage_modules(self, num_stages: int) -> List[Tuple[str, nn.Module]]:
        """``(name, module)`` of the first ``num_stages`` entries of :data:`STAGES` (what freezing ``num_stages``
        stages covers), in forward order."""
        if not isinstance(num_stages, int) or not 0 <= num_stages <= len(STAGES):
            raise ValueError(f'num_stages: must be an integer in 0..{len(STAGES)}, got {num_stages!r}')
        return [(name, getattr(self, name)) for group in STAGES[:num_stages] for name in group]

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Replace levels after the deepest kept index by identities; drop the head if asked or if truncated."""
        take, max_index = feature_take_indices(NUM_LEVELS, indices)
        for i in range(max_index + 1, NUM_LEVELS):
            setattr(self, f'level{i}', nn.Identity())
        truncated = max_index < NUM_LEVELS - 1
        if truncated:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or truncated:
            self.reset_classifier(0, '')
        return take


