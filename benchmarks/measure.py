"""The one measurement harness every benchmark here uses: command-line options and result files."""
import argparse
import json
import os
from typing import Any, Callable, Dict, List

__all__ = ['ROOT', 'variant_list', 'add_run_options', 'write_results']

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository root (the benchmarks run from a checkout)."""


def variant_list(text: str) -> List[str]:
    """argparse type: comma-separated variant names or aliases -> canonical names."""
    from dla_plugins.variants import resolve_variant

    try:
        return [resolve_variant(v.strip()).name for v in text.split(',') if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def add_run_options(p: argparse.ArgumentParser, name: str) -> None:
    """Options every interleaved benchmark takes: rounds, warm-up, memory, threads, output."""
    p.add_argument('--rounds', type=int, default=5, help='timed rounds (each times every config once)')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--no-memory', action='store_true', help='skip the peak training memory subprocesses')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
    p.add_argument('--out', default='output/bench', help='output folder (default output/bench, git-ignored)')
    p.add_argument('--name', default=name)
    p.add_argument('--no-progress', action='store_true')


def write_results(res: Dict[str, Any], out: str, name: str, to_markdown: Callable[[Dict[str, Any]], str],
                  plot: Callable[[Dict[str, Any], str], None]) -> int:
    """Write a benchmark result as OUT/NAME.json, .md and .png and print the markdown table."""
    os.makedirs(out, exist_ok=True)
    paths = {ext: os.path.join(out, f'{name}.{ext}') for ext in ('json', 'md', 'png')}
    with open(paths['json'], 'w') as f:
        json.dump(res, f, indent=2)
    md = to_markdown(res)
    with open(paths['md'], 'w') as f:
        f.write(md + '\n')
    plot(res, paths['png'])
    print(md)
    print('\nwrote ' + ', '.join(paths.values()))
    return 0
