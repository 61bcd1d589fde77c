"""``python -m benchmarks.bench``: ours vs timm's built-in DLA, same weights, same process, interleaved measurements.

Every configuration of both sides (memory format, our fused inference path, dtype) is timed once per round, rounds
repeat, and each figure is a median over rounds; ratios are medians of the per-round ratios (both sides share the
machine's load in every round). Peak training memory is measured in a fresh subprocess per model (CPU: growth of
the peak RSS during one training step; CUDA: ``torch.cuda.max_memory_allocated``).
"""
import argparse
import copy
import functools
import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks import measure

__all__ = ['run_bench', 'measure_train_memory', 'max_train_batch', 'to_markdown', 'plot', 'main']

DTYPES = ('fp32', 'bf16')
FORMATS = {'nchw': torch.contiguous_format, 'cl': torch.channels_last}


def _best(times: Dict[str, List[float]], keys: Sequence[str]) -> str:
    return min(keys, key=lambda k: statistics.median(times[k]))


@functools.cache
def _flops(name: str, size: int) -> Optional[float]:
    try:
        from dla_plugins.tools.zoo import count_gflops
    except ImportError:
        return None
    try:
        return count_gflops(name, size) * 1e9
    except ImportError:
        return None


def measure_train_memory(impl: str, variant: str, batch_size: int, img_size: int, device: str = 'cpu',
                         memory_format: str = 'cl', grad_checkpointing: bool = False,
                         dtype: str = 'fp32') -> Dict[str, Any]:
    """Peak memory of one training step (forward, backward, SGD step) in a fresh subprocess.

    CPU: after a full-size warm-up step, the kernel's peak-RSS mark is reset and the growth of the peak RSS over
    the RSS before the second step is reported (MiB); large blocks are mmapped so RSS follows live memory.
    CUDA: max_memory_allocated minus the memory allocated before the step (MiB); a step that runs out of GPU memory
    returns ``{'oom': True}`` instead of raising. ``dtype='bf16'`` runs the step under bf16 autocast.
    """
    if dtype not in DTYPES:
        raise ValueError(f'dtype: unknown dtype {dtype!r}; allowed: {list(DTYPES)}')
    spec = dict(impl=impl, variant=variant, batch_size=batch_size, img_size=img_size, device=device,
                memory_format=memory_format, grad_checkpointing=grad_checkpointing, dtype=dtype)
    return measure.run_child('benchmarks.bench', spec)


def max_train_batch(impl: str, variant: str, img_size: int, device: str = 'cuda', memory_format: str = 'cl',
                    grad_checkpointing: bool = False, dtype: str = 'bf16', start: int = 64,
                    budget_mib: Optional[float] = None, limit: int = 1 << 16, resolution: float = 0.05,
                    max_probes: int = 16) -> Dict[str, Any]:
    """The largest training batch that fits, by doubling from ``start`` then bisection (one subprocess per probe).

    A batch fits when its training step (:func:`measure_train_memory`) does not run out of GPU memory and, with
    ``budget_mib``, when its peak step memory is at most ``budget_mib`` (on the CPU, where nothing runs out, a
    budget is required). The search stops when the bracket is narrower than ``resolution`` of the best fitting
    batch, at ``limit``, or after ``max_probes`` probes; the result lists every probe.
    """
    if budget_mib is None and not str(device).startswith('cuda'):
        raise ValueError('budget_mib: required on the CPU (nothing runs out of memory there)')
    if start < 1:
        raise ValueError(f'start: must be >= 1, got {start}')
    probes: List[Dict[str, Any]] = []

    def fits(batch: int) -> bool:
        r = measure_train_memory(impl, variant, batch, img_size, device, memory_format, grad_checkpointing, dtype)
        ok = not r.get('oom') and (budget_mib is None or r['peak_mib'] <= budget_mib)
        probes.append(dict(batch_size=batch, fits=ok, **r))
        return ok

    lo, hi = measure.search_max(fits, start, limit, resolution, max_probes)
    return dict(impl=impl, variant=variant, img_size=img_size, memory_format=memory_format, dtype=dtype,
                grad_checkpointing=grad_checkpointing, budget_mib=budget_mib, max_batch=lo,
                first_failing=hi, probes=probes)


def _memory_child(impl: str, variant: str, batch_size: int, img_size: int, device: str, memory_format: str,
                  grad_checkpointing: bool, dtype: str = 'fp32') -> Dict[str, Any]:
    torch.manual_seed(0)
    dev = torch.device(device)
    model = _build(impl, variant).to(dev).train()
    if grad_checkpointing:
        model.set_grad_checkpointing(True)
    fmt = FORMATS[memory_format]
    model = model.to(memory_format=fmt)
    x = torch.randn(batch_size, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 1000, (batch_size,), device=dev)
    return measure.step_peak_mib(_step_fn(model, 'train', dtype, x, y, dev, lr=0.01), dev)


def _build(impl: str, variant: str) -> nn.Module:
    if impl == 'timm':
        return measure.timm_reference(variant)
    from dla_plugins.factory import create_dla

    return create_dla(variant)


def run_bench(variants: Sequence[str] = ('dla34',), batch_size: int = 8, img_size: int = 224,
              modes: Sequence[str] = ('eval', 'train'), dtypes: Sequence[str] = ('fp32',),
              formats: Sequence[str] = ('nchw', 'cl'), compile: bool = False, rounds: int = 5, warmup: int = 1,
              memory: bool = True, device: Optional[str] = None, progress: bool = True,
              compile_backend: str = 'inductor', gemm_size: Optional[int] = None) -> Dict[str, Any]:
    """Benchmark ours against timm's DLA; returns a JSON-able dict (see ``docs/benchmarks.md``).

    ``compile`` wraps every configuration in ``torch.compile(fullgraph=True, backend=compile_backend)``: a graph
    break is an error. Peak training memory is measured under the first of ``dtypes``. On CUDA, cuDNN's autotuner
    (``cudnn.benchmark``) is on for both sides.
    """
    from dla_plugins.deploy.fuse import optimize_for_inference

    for d in dtypes:
        if d not in DTYPES:
            raise ValueError(f'dtypes: unknown dtype {d!r}; allowed: {list(DTYPES)}')
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f'formats: unknown memory format {f!r}; allowed: {list(FORMATS)}')
    for m in modes:
        if m not in ('eval', 'train'):
            raise ValueError(f"modes: unknown mode {m!r}; allowed: ['eval', 'train']")
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    if dev.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    result: Dict[str, Any] = dict(
        **measure.machine(dev, timm=measure.dist_version('timm')),
        settings=dict(variants=list(variants), batch_size=batch_size, img_size=img_size, modes=list(modes),
                      dtypes=list(dtypes), formats=list(formats), compile=compile, rounds=rounds, warmup=warmup,
                      compile_backend=compile_backend if compile else None),
        gemm_flops={d: measure.gemm_flops(dev, torch.float32 if d == 'fp32' else torch.bfloat16, gemm_size)
                    for d in dtypes},
        results=[])
    for name in variants:
        torch.manual_seed(0)
        theirs = measure.timm_reference(name).to(dev)
        from dla_plugins.factory import create_dla

        ours = create_dla(name).to(dev)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        fwd_flops = _flops(name, img_size)
        x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
        y = torch.randint(0, 1000, (batch_size,), device=dev)
        for mode in modes:
            for dtype in dtypes:
                entry = _bench_one(name, mode, dtype, ours, theirs, x, y, formats, compile and compile_backend,
                                   rounds, warmup, dev, progress, optimize_for_inference)
                if fwd_flops:
                    flops = fwd_flops * 2 * batch_size * (1 if mode == 'eval' else 3)  # train ~ fwd + 2x bwd
                    for side in ('ours', 'timm'):
                        t = entry[side]['best_s']
                        entry[side]['tflops'] = flops / t / 1e12
                        entry[side]['fraction_of_gemm_peak'] = flops / t / result['gemm_flops'][dtype]
                result['results'].append(entry)
        if memory and 'train' in modes:
            fmt, mdt = ('cl' if 'cl' in formats else formats[0]), dtypes[0]
            if dev.type == 'cuda':
                torch.cuda.empty_cache()  # the subprocesses below share the GPU with this process's cached blocks
            mem = {k: measure_train_memory(impl, name, batch_size, img_size, str(dev), fmt, ckpt, mdt)
                   for k, impl, ckpt in (('timm', 'timm', False), ('ours', 'ours', False),
                                         ('ours_grad_ckpt', 'ours', True))}
            fit = all('peak_mib' in m for m in mem.values())
            mem['ckpt_vs_timm'] = (mem['ours_grad_ckpt']['peak_mib'] / max(mem['timm']['peak_mib'], 1e-9)
                                   if fit else None)  # None: a side ran out of GPU memory
            result['results'].append(dict(variant=name, mode='train_memory', memory_format=fmt, dtype=mdt, **mem))
    return measure.finish(result)


def _bench_one(name, mode, dtype, ours, theirs, x, y, formats, compile, rounds, warmup, dev, progress,
               optimize_for_inference) -> Dict[str, Any]:
    fns: Dict[str, Callable[[], Any]] = {}
    sides: Dict[str, List[str]] = {'ours': [], 'timm': []}
    if compile:
        # Fresh Dynamo caches per (variant, mode): otherwise the variants' forwards share one code object's cache, the
        # later ones are recompiled with dynamic shapes, and past the recompile limit they silently run eagerly.
        torch.compiler.reset()
    xs = {f: x.contiguous(memory_format=FORMATS[f]) for f in formats}
    for f in formats:
        for side, base in (('ours', ours), ('timm', theirs)):
            m = copy.deepcopy(base.to(memory_format=FORMATS[f]))
            variants = [('', m)]
            if mode == 'eval' and side == 'ours':
                variants.append(('fused', optimize_for_inference(base, memory_format='channels_last' if f == 'cl'
                                                                 else 'contiguous')))
            for tag, mod in variants:
                key = f'{side}:{f}' + (f':{tag}' if tag else '')
                if compile:  # the backend name, or False
                    mod = torch.compile(mod, fullgraph=True, backend=compile)
                    key += ':compiled'
                fns[key] = _step_fn(mod, mode, dtype, xs[f], y, dev)
                sides[side].append(key)
    desc = f'{name} {mode} {dtype}' + (' compiled' if compile else '')
    times = measure.interleaved(fns, rounds, warmup, dev, desc, progress)
    best = {s: _best(times, ks) for s, ks in sides.items()}
    bs = x.shape[0]
    entry: Dict[str, Any] = dict(variant=name, mode=mode, dtype=dtype, compiled=bool(compile),
                                 configs={k: dict(median_s=statistics.median(v), img_s=bs / statistics.median(v))
                                          for k, v in times.items()})
    for side in ('ours', 'timm'):
        med = statistics.median(times[best[side]])
        entry[side] = dict(best=best[side], best_s=med, img_s=bs / med)
    entry['speedup'] = measure.median_ratio(times[best['timm']], times[best['ours']])
    return entry


def _step_fn(model: nn.Module, mode: str, dtype: str, x: torch.Tensor, y: torch.Tensor, dev: torch.device,
             lr: float = 1e-4) -> Callable[[], Any]:
    if mode == 'eval':
        model.eval()

        def run():
            with torch.inference_mode(), measure.autocast(dev, dtype):
                return model(x)
        return run
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)

    def step():
        with measure.autocast(dev, dtype):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def to_markdown(result: Dict[str, Any]) -> str:
    """Render a bench result as a markdown table (img/s, ratio, fraction of the GEMM peak, memory)."""
    lines = ['| variant | mode | dtype | compiled | ours img/s (best config) | timm img/s (best config) | ours/timm '
             '| ours % of GEMM peak | timm % of GEMM peak |', '|---|---|---|---|---|---|---|---|---|']
    mem_lines = []
    for r in result['results']:
        if r['mode'] == 'train_memory':
            peak = {k: (f"{r[k]['peak_mib']:.0f}" if 'peak_mib' in r[k] else 'OOM')
                    for k in ('timm', 'ours', 'ours_grad_ckpt')}
            ratio = f"{r['ckpt_vs_timm']:.2f}" if r['ckpt_vs_timm'] is not None else '-'
            mem_lines.append(f"| {r['variant']} | {r['memory_format']} {r.get('dtype', 'fp32')} | {peak['timm']} | "
                             f"{peak['ours']} | {peak['ours_grad_ckpt']} | {ratio} |")
            continue
        pct = {s: (f"{100 * r[s]['fraction_of_gemm_peak']:.0f}%" if 'fraction_of_gemm_peak' in r[s] else '-')
               for s in ('ours', 'timm')}
        lines.append(f"| {r['variant']} | {r['mode']} | {r['dtype']} | {'yes' if r['compiled'] else 'no'} | "
                     f"{r['ours']['img_s']:.1f} ({r['ours']['best']}) | {r['timm']['img_s']:.1f} ({r['timm']['best']}) "
                     f"| {r['speedup']:.2f}x | {pct['ours']} | {pct['timm']} |")
    s = result['settings']
    m = result['machine']
    head = (f"batch {s['batch_size']}, {s['img_size']}x{s['img_size']}, {s['rounds']} rounds, device {m['device']} "
            f"({m['device_name']}, {m['torch_threads']} threads), load average {m['loadavg_start'][0]:.1f} at start, "
            f"{m['loadavg_end'][0]:.1f} at end. GEMM peak: "
            + ', '.join(f'{k} {v / 1e9:.0f} GFLOP/s' for k, v in result['gemm_flops'].items()) + '.')
    out = head + '\n\n' + '\n'.join(lines)
    if mem_lines:
        out += ('\n\nPeak training-step memory (MiB):\n\n| variant | format | timm | ours | ours + grad checkpointing '
                '| ckpt/timm |\n|---|---|---|---|---|---|\n' + '\n'.join(mem_lines))
    return out


def plot(result: Dict[str, Any], path: str) -> None:
    """Bar chart of img/s, ours vs timm, one group per (variant, mode, dtype, compiled)."""
    rows = [r for r in result['results'] if r['mode'] != 'train_memory']
    s = result['settings']
    measure.bar_chart(path, [f"{r['variant']}\n{r['mode']} {r['dtype']}" + ('\ncompiled' if r['compiled'] else '')
                     for r in rows],
              {'dla_plugins (best config)': [r['ours']['img_s'] for r in rows],
               'timm (best config)': [r['timm']['img_s'] for r in rows]}, 'images / s',
              f"DLA throughput, batch {s['batch_size']}, {s['img_size']}px, {result['machine']['device']}",
              labels=[f"{r['speedup']:.2f}x" for r in rows])


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog='python -m benchmarks.bench',
                                description="Interleaved benchmark of ours vs timm's DLA (same weights, same process). "
                                            'Each side is reported at its best configuration; ratios are medians of '
                                            'per-round ratios. Writes NAME.json, NAME.md and NAME.png into --out.')
    b.add_argument('--variants', type=measure.variant_list, default=['dla34'], help='comma-separated (default dla34)')
    b.add_argument('--batch-size', type=int, default=8)
    b.add_argument('--img-size', type=int, default=224)
    b.add_argument('--modes', default='eval,train', help="comma-separated of 'eval', 'train'")
    b.add_argument('--dtypes', default='fp32', help="comma-separated of 'fp32', 'bf16' (autocast)")
    b.add_argument('--formats', default='nchw,cl', help="memory formats: comma-separated of 'nchw', 'cl'")
    b.add_argument('--compile', action='store_true', help='torch.compile both sides (slow on CPU)')
    b.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    measure.add_run_options(b, 'bench')
    return b


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m benchmarks.bench``."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_bench(args.variants, batch_size=args.batch_size, img_size=args.img_size, modes=args.modes.split(','),
                    dtypes=args.dtypes.split(','), formats=args.formats.split(','), compile=args.compile,
                    rounds=args.rounds, warmup=args.warmup, memory=not args.no_memory, device=args.device,
                    progress=not args.no_progress)
    return measure.write_results(res, args.out, args.name, to_markdown, plot)


if __name__ == '__main__':
    if not measure.child_main(_memory_child):
        sys.exit(main())
