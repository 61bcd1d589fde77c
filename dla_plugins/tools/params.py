"""``dla-plugins params``: the parameter counts of the paper's Table 5 (fine-grained comparison), measured.

The paper counts every model "for 1000-way classification"; ``--classes`` changes the head. DLA rows are our
variants; the baselines are torchvision's VGG-16 and ResNet-50 (built on the meta device: no memory, no weights).
The compact-bilinear (Gao et al. 2016) and kernel-pooling (Cui et al. 2017) rows on VGG-16 are counted as VGG-16's
convolutional layers plus a linear classifier on a 4096-d pooled feature (the pooling itself has no parameters);
on ResNet-50 the paper lists ResNet-50's own count, and so do we.
"""
import argparse
import json
from typing import Any, Callable, Dict, List

import torch
import torch.nn as nn

from ..factory import create_dla

__all__ = ['TABLE5', 'table5_params', 'format_params', 'add_params_parser']


def _dla(variant: str) -> Callable[[int], nn.Module]:
    return lambda classes: create_dla(variant, num_classes=classes)


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(classes: int) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(num_classes=classes)
    return build


def _vgg16_pooled(dim: int) -> Callable[[int], nn.Module]:
    def build(classes: int) -> nn.Module:
        return nn.Sequential(_torchvision('vgg16')(classes).features, nn.Linear(dim, classes))
    return build


# (Table 5 row, what is built, how, the paper's P in millions)
TABLE5 = (
    ('DLA-48-B-s', 'dla46_c', _dla('dla46_c'), 1.3),
    ('DLA-62-S-s', 'dla60x_c', _dla('dla60x_c'), 1.3),
    ('DLA-48-B-m', 'dla46_m', _dla('dla46_m'), 4.5),
    ('DLA-36', 'dla34', _dla('dla34'), 15.8),
    ('DLA-62-B', 'dla60', _dla('dla60'), 22.3),
    ('DLA-62-S', 'dla60x', _dla('dla60x'), 17.7),
    ('V-Baseline', 'torchvision vgg16', _torchvision('vgg16'), 138.3),
    ('V-Gao et al. (2016), V-Cui et al. (2017)', 'vgg16 conv layers + 4096-d feature -> linear',
     _vgg16_pooled(4096), 18.8),
    ('R-Baseline, R-Gao et al. (2016), R-Cui et al. (2017)', 'torchvision resnet50', _torchvision('resnet50'), 25.6),
)


def table5_params(num_classes: int = 1000) -> List[Dict[str, Any]]:
    """One row per Table 5 entry: ``row``, ``model`` (what was built), ``params`` (measured) and ``paper_params``.

    Raises:
        ValueError: ``num_classes`` < 1.
        ImportError: torchvision is missing (the baselines are its models).
    """
    if num_classes < 1:
        raise ValueError(f'classes: must be >= 1, got {num_classes}')
    rows = []
    for row, what, build, paper in TABLE5:
        with torch.device('meta'):  # shapes only
            model = build(num_classes)
        rows.append(dict(row=row, model=what, params=sum(p.numel() for p in model.parameters()),
                         paper_params=round(paper * 1e6)))
    return rows


def format_params(rows: List[Dict[str, Any]], fmt: str = 'table') -> str:
    """An aligned text table, a markdown table or JSON."""
    if fmt == 'json':
        return json.dumps(rows, indent=2)
    cells = [('Table 5 row', 'model', 'params', 'paper')] + [
        (r['row'], r['model'], f"{r['params'] / 1e6:.2f}M", f"{r['paper_params'] / 1e6:.1f}M") for r in rows]
    if fmt == 'md':
        lines = ['| ' + ' | '.join(c) + ' |' for c in cells]
        return '\n'.join(lines[:1] + ['|---|---|---:|---:|'] + lines[1:])
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    return '\n'.join('  '.join(c[i].ljust(widths[i]) if i < 2 else c[i].rjust(widths[i]) for i in range(4))
                     for c in cells)


def _cmd_params(args: argparse.Namespace) -> int:
    print(format_params(table5_params(args.classes), args.format))
    return 0


def add_params_parser(sub: 'argparse._SubParsersAction') -> None:
    """Register ``dla-plugins params`` on the CLI's subparsers."""
    p = sub.add_parser('params', help="parameter counts of the paper's Table 5 models (1000-way, as the paper)",
                       description="Parameter counts of the fine-grained comparison (the paper's Table 5), measured "
                                   'on our DLA variants and torchvision baselines, beside the paper\'s P column.')
    p.add_argument('--classes', type=int, default=1000, help='classifier outputs (default 1000, as the paper counts)')
    p.add_argument('--format', choices=('table', 'md', 'json'), default='table')
    p.set_defaults(func=_cmd_params)
