"""The DLA variant table: one row per architecture, data only.

Channels and HDA depths per level follow Table 1 of the paper; the names follow timm/ucbdrive (whose "34" is the
paper's "36", and so on: they count layers differently). ``paper_params`` is the parameter count printed in the
paper's Tables 2, 3 and 5 for 1000-way classification, where the paper has one.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

__all__ = ['DLAVariant', 'VARIANTS', 'ALIASES', 'resolve_variant', 'list_variants']


@dataclass(frozen=True)
class DLAVariant:
    """One DLA architecture.

    Attributes:
        name: Canonical (timm-compatible) name.
        levels: Convs in level0/level1, then HDA tree depth of level2..level5.
        channels: Output channels of level0..level5.
        block: 'basic', 'bottleneck' (split/ResNeXt when ``cardinality > 1``) or 'res2' (Res2Net bottleneck).
        cardinality: Groups of the 3x3 convs (1 = plain bottleneck).
        base_width: Width per group, timm's convention (mid = floor(out * base_width / 64) * cardinality / 2).
        residual_root: Aggregation nodes add their last input (Eq. 4); used for networks deeper than 100 layers.
        res2_scale: Scale of the Res2Net bottleneck.
        paper_name: Name in the paper's Table 1, if the paper trains it.
        paper_params: Parameter count reported by the paper (1000 classes).
        in_timm: Whether timm ships this architecture (and ImageNet weights for it).
    """

    name: str
    levels: Tuple[int, int, int, int, int, int]
    channels: Tuple[int, int, int, int, int, int]
    block: str
    cardinality: int = 1
    base_width: int = 64
    residual_root: bool = False
    res2_scale: int = 4
    paper_name: Optional[str] = None
    paper_params: Optional[float] = None
    in_timm: bool = True
    aliases: Tuple[str, ...] = field(default=())

    @property
    def block_desc(self) -> str:
        if self.block == 'basic':
            return 'basic'
        if self.block == 'res2':
            return 'res2next' if self.cardinality > 1 else 'res2net'
        return f'split (C={self.cardinality})' if self.cardinality > 1 else 'bottleneck'


_SMALL = (16, 32, 64, 64, 128, 256)
_WIDE = (16, 32, 128, 256, 512, 1024)

_TABLE: List[DLAVariant] = [
    DLAVariant('dla34', (1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), 'basic',
               paper_name='DLA-36', paper_params=15.8e6, aliases=('dla36',)),
    DLAVariant('dla46_c', (1, 1, 1, 2, 2, 1), _SMALL, 'bottleneck',
               paper_name='DLA-48-B-s', paper_params=1.3e6),
    DLAVariant('dla46_m', (1, 1, 1, 2, 2, 1), (16, 32, 64, 128, 256, 512), 'bottleneck',
               paper_name='DLA-48-B-m', paper_params=4.5e6, in_timm=False),
    DLAVariant('dla46x_c', (1, 1, 1, 2, 2, 1), _SMALL, 'bottleneck', cardinality=32, base_width=4,
               paper_name='DLA-48-S-s', paper_params=1.1e6),
    DLAVariant('dla60x_c', (1, 1, 1, 2, 3, 1), _SMALL, 'bottleneck', cardinality=32, base_width=4,
               paper_name='DLA-62-S-s', paper_params=1.3e6),
    DLAVariant('dla60', (1, 1, 1, 2, 3, 1), _WIDE, 'bottleneck',
               paper_name='DLA-62-B', paper_params=22.3e6),
    DLAVariant('dla60x', (1, 1, 1, 2, 3, 1), _WIDE, 'bottleneck', cardinality=32, base_width=4,
               paper_name='DLA-62-S', paper_params=17.7e6),
    DLAVariant('dla102', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', residual_root=True,
               paper_name='DLA-104-B', paper_params=33.7e6),
    DLAVariant('dla102x', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', cardinality=32, base_width=4, residual_root=True,
               paper_name='DLA-104-S', paper_params=26.8e6),
    DLAVariant('dla102x2', (1, 1, 1, 3, 4, 1), _WIDE, 'bottleneck', cardinality=64, base_width=4, residual_root=True),
    DLAVariant('dla169', (1, 1, 2, 3, 5, 1), _WIDE, 'bottleneck', residual_root=True),
    DLAVariant('dla60_res2net', (1, 1, 1, 2, 3, 1), _WIDE, 'res2', cardinality=1, base_width=28),
    DLAVariant('dla60_res2next', (1, 1, 1, 2, 3, 1), _WIDE, 'res2', cardinality=8, base_width=4),
]

VARIANTS: Dict[str, DLAVariant] = {v.name: v for v in _TABLE}


def _norm_key(name: str) -> str:
    return name.lower().replace('-', '').replace('_', '')


ALIASES: Dict[str, str] = {}
for _v in _TABLE:
    for _a in (_v.name, _v.paper_name, *_v.aliases):
        if _a:
            ALIASES[_norm_key(_a)] = _v.name


def resolve_variant(name: str) -> DLAVariant:
    """Look a variant up by its canonical name or an alias (paper names like 'DLA-62-S' included)."""
    if isinstance(name, DLAVariant):
        return name
    key = ALIASES.get(_norm_key(str(name)))
    if key is None:
        valid = ', '.join(f'{v.name}' + (f' ({v.paper_name})' if v.paper_name else '') for v in _TABLE)
        raise ValueError(f"variant: unknown DLA variant {name!r}; valid variants are: {valid}")
    return VARIANTS[key]


def list_variants() -> List[str]:
    """Canonical names of every DLA variant, in table order."""
    return [v.name for v in _TABLE]
