"""The model zoo table: architecture facts per variant (params ours vs paper vs timm, GFLOPs, feature levels).

GFLOPs are counted by fvcore's ``FlopCountAnalysis``, which counts one fused multiply-add as one flop: the figures
are multiply-accumulates (MACs), as in most papers' "FLOPs" columns; multiply by 2 for floating-point operations.
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..factory import create_dla
from ..variants import VARIANTS, resolve_variant

__all__ = ['zoo_rows', 'format_rows', 'count_gflops', 'GFLOPS_NOTE']

GFLOPS_NOTE = ('gflops: fvcore FlopCountAnalysis at {size}x{size}, which counts one fused multiply-add as one flop '
               '(i.e. GMACs; x2 for floating-point operations).')


def count_gflops(variant: str, img_size: int = 224, model: Optional[torch.nn.Module] = None) -> float:
    """GMACs (fvcore 'flops': one multiply-add = 1) of one ``img_size`` x ``img_size`` image through the classifier.

    Raises:
        ImportError: fvcore is not installed (``pip install dla-plugins[bench]``).
    """
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError as e:
        raise ImportError('count_gflops needs fvcore: pip install "dla-plugins[bench]"') from e
    model = create_dla(resolve_variant(variant).name) if model is None else model
    model.eval()
    logging.getLogger('fvcore').setLevel(logging.ERROR)
    with torch.no_grad():
        fca = FlopCountAnalysis(model, torch.zeros(1, 3, img_size, img_size))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return fca.total() / 1e9


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def zoo_rows(variants: Optional[Sequence[str]] = None, gflops: bool = True, img_size: int = 224
             ) -> List[Dict[str, Any]]:
    """One dict per variant (all by default). timm's parameter count is measured on timm's own model when timm is
    installed; ``gflops`` (GMACs at ``img_size``, see :func:`count_gflops`) needs fvcore and is None without it."""
    try:
        import timm.models.dla as timm_dla  # the built-in module, whatever the registry holds
    except ImportError:
        timm_dla = None
    rows = []
    names = list(VARIANTS) if variants is None else [resolve_variant(n).name for n in variants]
    for v in (VARIANTS[n] for n in names):
        model = create_dla(v.name)
        flops = None
        if gflops:
            try:
                flops = count_gflops(v.name, img_size, model)
            except ImportError:
                flops = None
        timm_params = None
        if timm_dla is not None and v.in_timm:
            timm_params = _params(getattr(timm_dla, v.name)())
        rows.append(dict(
            name=v.name, paper_name=v.paper_name or '', block=v.block_desc, params=_params(model),
            paper_params=v.paper_params, timm_params=timm_params, **({'gflops': flops} if gflops else {}),
            channels=[f['num_chs'] for f in model.feature_info], strides=[f['reduction'] for f in model.feature_info]))
    return rows


def _m(n) -> str:
    return '-' if n is None else f'{n / 1e6:.2f}M'


def format_rows(rows: List[Dict[str, Any]], fmt: str = 'table') -> str:
    """Render rows as an aligned text table ('table') or a markdown table ('md')."""
    cols = [c for c in ('name', 'paper_name', 'block', 'params', 'paper_params', 'timm_params', 'gflops',
                        'channels', 'strides') if any(c in r for r in rows)]
    def cell(r, c):
        v = r.get(c)
        if c.endswith('params'):
            return _m(v)
        if c == 'gflops':
            return '-' if v is None else f'{v:.2f}'
        return '/'.join(map(str, v)) if isinstance(v, list) else str(v)
    body = [[cell(r, c) for c in cols] for r in rows]
    if fmt == 'md':
        lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
        return '\n'.join(lines + ['| ' + ' | '.join(b) + ' |' for b in body])
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(cols)]
    fmt_row = lambda xs: '  '.join(x.ljust(w) for x, w in zip(xs, widths))  # noqa: E731
    return '\n'.join([fmt_row(cols), fmt_row(['-' * w for w in widths])] + [fmt_row(b) for b in body])
