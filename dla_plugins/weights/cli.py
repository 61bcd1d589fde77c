"""``dla-plugins weights list | fetch NAME... | verify [NAME...] | path NAME``."""
import argparse
import json
from typing import Any, List, Optional

from .fetch import ENV_HOME, ENV_MIRROR, ENV_OFFLINE, WeightsError, cache_dir, cache_record, fetch, verify
from .registry import WeightEntry, entries, get

__all__ = ['add_parser', 'list_rows']


def _size(n: Optional[int]) -> str:
    if not n:
        return '?'
    return f'{n / 2 ** 20:.1f} MiB' if n >= 2 ** 20 else f'{n / 1024:.1f} KiB'


def list_rows() -> List[dict]:
    """One row per registry entry: name, family, variant, size, hash status, sources, cached."""
    rows = []
    for e in entries():
        rec = cache_record(e.name)
        auto = e.automatic_sources
        rows.append(dict(name=e.name, family=e.family, variant=e.variant,
                         size=_size(rec.size if rec else e.size), hash=e.hash_status,
                         pinned=f'{sum(s.pinned for s in auto)}/{len(auto)}', sources=len(auto),
                         cached='yes' if rec is not None and rec.path.is_file() else 'no'))
    return rows


def _cmd_list(args: argparse.Namespace) -> int:
    if args.format == 'json':
        from .doc import registry_json

        out = registry_json()
        cached = {r['name']: r['cached'] == 'yes' for r in list_rows()}
        for row in out['entries']:
            row['cached'] = cached[row['name']]
        print(json.dumps(out, indent=1))
        return 0
    rows = list_rows()
    cols = ('name', 'family', 'variant', 'size', 'hash', 'pinned', 'sources', 'cached')
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print('  '.join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print('  '.join(str(r[c]).ljust(width[c]) for c in cols))
    print(f"\n{len(rows)} entries, {len({r['family'] for r in rows})} layout families (--format json lists them)")
    print(f'cache: {cache_dir()} ({ENV_HOME}); pinned = sources with a published hash or size; the others are '
          'checked against the sha256 recorded at first download')
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    for name in args.names:
        path = fetch(name, progress=not args.no_progress, timeout=args.timeout)
        rec = cache_record(name)
        print(f'{name}: {path} (from {rec.source}; {rec.hash_status}; sha256 {rec.sha256})' if rec else path)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    names = args.names or [e.name for e in entries() if cache_record(e.name) is not None]
    if not names:
        print(f'nothing cached in {cache_dir()}')
        return 0
    bad = 0
    for name in names:
        try:
            rec = verify(name)
            print(f'{name}: ok ({rec.hash_status}; sha256 {rec.sha256}; {rec.size} bytes)')
        except WeightsError as e:
            bad += 1
            print(f'{name}: FAILED: {e}')
    return 1 if bad else 0


def _cmd_path(args: argparse.Namespace) -> int:
    entry: WeightEntry = get(args.name)
    rec = cache_record(entry.name)
    if rec is None or not rec.path.is_file():
        raise WeightsError(f'weights: {entry.name!r} is not cached ({cache_dir() / entry.name}); '
                           f'run `dla-plugins weights fetch {entry.name}`')
    print(rec.path)
    return 0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add ``weights`` (with ``list``, ``fetch``, ``verify``, ``path``) to a subparsers object."""
    w = sub.add_parser('weights', help='pretrained weights by name: list, fetch, verify, path',
                       description='Every public DLA weight file by name (dla34.in1k, centernet/ctdet_coco_dla_2x, '
                                   '...), fetched from its sources in priority order with failover, resumed '
                                   f'downloads and verification. {ENV_HOME}: the cache; {ENV_MIRROR}: an http(s) '
                                   'base URL or folder laid out as <name>/<file> (tried first); '
                                   f'{ENV_OFFLINE}=1: cache only.')
    ws = w.add_subparsers(dest='weights_command', required=True)
    ls = ws.add_parser('list', help='every name: family, variant, size, hash status, sources, cached')
    ls.add_argument('--format', choices=('table', 'json'), default='table',
                    help='json: {"count", "families", "entries"} with every source, citation and note')
    ls.set_defaults(func=_cmd_list)
    f = ws.add_parser('fetch', help='download (or find in the cache) and verify')
    f.add_argument('names', nargs='+', metavar='NAME')
    f.add_argument('--timeout', type=float, default=None, help='seconds per connection/read (default 30)')
    f.add_argument('--no-progress', action='store_true')
    f.set_defaults(func=_cmd_fetch)
    v = ws.add_parser('verify', help='re-hash cached files against their record and published hash (exit 1 if any '
                                     'differs)')
    v.add_argument('names', nargs='*', metavar='NAME', help='default: every cached file')
    v.set_defaults(func=_cmd_verify)
    p = ws.add_parser('path', help='print the cached file of NAME')
    p.add_argument('name', metavar='NAME')
    p.set_defaults(func=_cmd_path)
    return w
