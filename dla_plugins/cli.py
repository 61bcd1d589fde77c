"""The ``dla-plugins`` command line: ``zoo``, ``demo`` (more subcommands are added by the bench/convert tools)."""
import argparse
import json
import sys
from typing import List, Optional

__all__ = ['main', 'build_parser']


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import format_rows, zoo_rows

    rows = zoo_rows()
    print(json.dumps(rows, indent=2) if args.format == 'json' else format_rows(rows, args.format))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import train_shapes_classifier

    res = train_shapes_classifier(args.variant, epochs=args.epochs)
    print(f"[core] {args.variant} on synthetic shapes: loss {res['first_loss']:.3f} -> {res['final_loss']:.3f}, "
          f"val accuracy {res['val_accuracy']:.3f} (chance {res['chance']:.2f}), {res['seconds']:.0f}s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='dla-plugins', description='Deep Layer Aggregation tools.')
    sub = p.add_subparsers(dest='command', required=True)
    z = sub.add_parser('zoo', help='list every variant with its params and feature levels')
    z.add_argument('--format', choices=('table', 'json', 'md'), default='table')
    z.set_defaults(func=_cmd_zoo)
    d = sub.add_parser('demo', help='train a small DLA on synthetic shapes (CPU, ~1 minute)')
    d.add_argument('--variant', default='dla46_c')
    d.add_argument('--epochs', type=int, default=3)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
