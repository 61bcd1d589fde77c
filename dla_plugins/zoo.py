"""The model zoo table: architecture facts per variant (params ours vs paper vs timm, feature channels/strides)."""
from typing import Any, Dict, List

from .factory import create_dla
from .variants import VARIANTS

__all__ = ['zoo_rows', 'format_rows']


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def zoo_rows() -> List[Dict[str, Any]]:
    """One dict per variant. timm's parameter count is measured on timm's own model when timm is installed."""
    try:
        import timm.models.dla as timm_dla  # the built-in module, whatever the registry holds
    except ImportError:
        timm_dla = None
    rows = []
    for v in VARIANTS.values():
        model = create_dla(v.name)
        timm_params = None
        if timm_dla is not None and v.in_timm:
            timm_params = _params(getattr(timm_dla, v.name)())
        rows.append(dict(
            name=v.name, paper_name=v.paper_name or '', block=v.block_desc, params=_params(model),
            paper_params=v.paper_params, timm_params=timm_params,
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
