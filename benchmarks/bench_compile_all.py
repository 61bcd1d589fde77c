"""Check torch.compile(fullgraph=True) on every DLA variant, the fused inference path and DLASeg (conv and dcn).

fullgraph=True raises on any graph break, so a pass means one graph. The default backend 'eager' checks Dynamo's
capture only (fast on CPU); ``--backend inductor`` also generates code and compares outputs.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_compile_all [--backend inductor] [--variants dla34,dla60x]
"""
import argparse
import sys
import time

import torch
from tqdm.auto import tqdm

from dla_plugins import DLASeg, create_dla, list_variants
from dla_plugins.deploy.fuse import optimize_for_inference


def _check(name: str, model: torch.nn.Module, x: torch.Tensor, backend: str, train: bool) -> str:
    torch.compiler.reset()
    model.train(train)
    t0 = time.time()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    try:
        with torch.set_grad_enabled(train):
            out = compiled(x)
            if train:
                out.float().sum().backward()
            else:
                ref = model(x)
                torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    except Exception as e:  # report every failure, keep going
        return f'FAIL {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}'
    return f'ok   {name} ({time.time() - t0:.0f}s)'


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backend', default='eager', choices=('eager', 'aot_eager', 'inductor'))
    p.add_argument('--variants', default=','.join(list_variants()))
    p.add_argument('--no-seg', action='store_true', help='skip DLASeg')
    p.add_argument('--size', type=int, default=64)
    args = p.parse_args()
    x = torch.randn(2, 3, args.size, args.size)
    jobs = []
    for v in args.variants.split(','):
        jobs.append((f'{v} eval', lambda v=v: create_dla(v), False))
        jobs.append((f'{v} train', lambda v=v: create_dla(v), True))
        jobs.append((f'{v} fused', lambda v=v: optimize_for_inference(create_dla(v)), False))
    for nt in () if args.no_seg else ('conv', 'dcn'):
        jobs.append((f'DLASeg dla34 {nt} eval', lambda nt=nt: DLASeg('dla34', node_type=nt), False))
        jobs.append((f'DLASeg dla34 {nt} train', lambda nt=nt: DLASeg('dla34', node_type=nt), True))
    lines = []
    for name, build, train in tqdm(jobs, desc='compile'):
        lines.append(_check(name, build(), x, args.backend, train))
        tqdm.write(lines[-1])
    print(f"{sum(line.startswith('ok') for line in lines)}/{len(lines)} compiled with fullgraph=True")
    return int(any(line.startswith('FAIL') for line in lines))


if __name__ == '__main__':
    sys.exit(main())
