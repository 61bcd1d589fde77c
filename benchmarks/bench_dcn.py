"""``python -m benchmarks.bench_dcn``: deformable conv implementations side by side, interleaved, one process.

Two levels: one modulated deformable conv (``deform_conv2d``: 'native', 'torchvision', mmcv's
``modulated_deform_conv2d`` when importable) against a plain conv of the same shape, forward and forward + backward;
and ``DLASeg`` with deformable nodes (native / torchvision) against the conv-node model, eval and one training step,
plus the peak training-step memory of each (fresh subprocess per model). Every configuration is timed once per
round; figures are medians over rounds and ratios are medians of per-round ratios (the machine's load is shared by
all sides within a round). Offsets are non-zero (samples fall between pixels and outside the image).
"""
import argparse
import copy
import statistics
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks import measure
from dla_plugins.dcn import deform_conv2d

__all__ = ['run_dcn_bench', 'to_markdown', 'plot', 'OP_IMPLS']

OP_IMPLS = ('conv', 'native', 'torchvision', 'mmcv')
NODE_CONFIGS = ('conv', 'dcn-native', 'dcn-torchvision')
# (batch, C_in, C_out, H, W): the DLA-Up node of the issue (2 * 64 -> 64 channels at stride 4 of a 256px image)
OP_SHAPE = (2, 128, 64, 64, 64)
SMOKE_OP_SHAPE = (1, 16, 8, 12, 12)


def _mmcv_op() -> Optional[Callable[..., torch.Tensor]]:
    try:
        from mmcv.ops import modulated_deform_conv2d
    except Exception:  # absent, or built without ops
        return None
    return modulated_deform_conv2d


def _op_inputs(shape: Tuple[int, int, int, int, int], dev: torch.device, dtype: torch.dtype) -> Dict[str, torch.Tensor]:
    n, cin, cout, h, w = shape
    g = torch.Generator().manual_seed(0)
    t = dict(x=torch.randn(n, cin, h, w, generator=g), weight=torch.randn(cout, cin, 3, 3, generator=g) * 0.05,
             offset=torch.randn(n, 18, h, w, generator=g) * 2, mask=torch.rand(n, 9, h, w, generator=g),
             bias=torch.randn(cout, generator=g))
    return {k: v.to(dev, dtype).requires_grad_() for k, v in t.items()}


def _op_fn(impl: str, t: Dict[str, torch.Tensor], compile: bool) -> Callable[[], torch.Tensor]:
    if impl == 'conv':
        return lambda: F.conv2d(t['x'], t['weight'], t['bias'], 1, 1)
    if impl == 'mmcv':
        op = _mmcv_op()
        assert op is not None
        return lambda: op(t['x'], t['offset'], t['mask'], t['weight'], t['bias'], 1, 1, 1, 1, 1)
    fn: Callable[..., torch.Tensor] = deform_conv2d
    if compile:
        fn = torch.compile(deform_conv2d, fullgraph=True)
    return lambda: fn(t['x'], t['offset'], t['weight'], t['bias'], 1, 1, 1, t['mask'], impl=impl)


def _timed(fn: Callable[[], torch.Tensor], mode: str, inputs: Sequence[torch.Tensor]) -> Callable[[], None]:
    if mode in ('fwd', 'eval'):
        def run() -> None:
            with torch.no_grad():
                fn()
        return run

    def run_bwd() -> None:
        for p in inputs:
            p.grad = None
        fn().float().sum().backward()
    return run_bwd


def _try(fn: Callable[[], None]) -> Optional[str]:
    """None if ``fn`` runs, else the error (type and first line) that says why this side has no figure."""
    try:
        fn()
        return None
    except Exception as e:  # an implementation without this dtype/device is reported, not fatal
        return f'{type(e).__name__}: {str(e).splitlines()[0][:160]}' if str(e) else type(e).__name__


def _section(fns: Dict[str, Callable[[], None]], rounds: int, warmup: int, dev: torch.device, desc: str,
             progress: bool, base: str) -> Dict[str, Any]:
    errors = {k: e for k, e in ((k, _try(f)) for k, f in fns.items()) if e is not None}
    ok = {k: f for k, f in fns.items() if k not in errors}
    times = measure.interleaved(ok, rounds, max(warmup - 1, 0), dev, desc, progress)
    out: Dict[str, Any] = dict(median_ms={k: 1e3 * statistics.median(v) for k, v in times.items()},
                               unsupported=errors)
    if base in times:
        out[f'ratio_vs_{base}'] = {k: measure.median_ratio(v, times[base]) for k, v in times.items()}
    if 'native' in times or 'dcn-native' in times:
        nat = 'native' if 'native' in times else 'dcn-native'
        out['speedup_of_native'] = {k: measure.median_ratio(v, times[nat]) for k, v in times.items() if k != nat}
    return out


def _dcn_models(variant: str, img_size: int, dev: torch.device) -> Dict[str, nn.Module]:
    from dla_plugins.seg import DLASeg

    torch.manual_seed(0)
    conv = DLASeg(variant, num_classes=19, node_type='conv')
    torch.manual_seed(0)
    dcn = DLASeg(variant, num_classes=19, node_type='dcn', dcn_impl='native')
    with torch.no_grad():  # trained-looking offsets: samples between pixels, some outside the map
        for m in dcn.modules():
            if hasattr(m, 'offset_mask'):
                m.offset_mask.weight.normal_(0, 0.02)
                m.offset_mask.bias.normal_(0, 0.5)
    tv = copy.deepcopy(dcn)
    for m in tv.modules():
        if hasattr(m, 'impl'):
            m.impl = 'torchvision'
    return {'conv': conv.to(dev), 'dcn-native': dcn.to(dev), 'dcn-torchvision': tv.to(dev)}


def _model_step(model: nn.Module, mode: str, dtype: str, x: torch.Tensor, compile: bool) -> Callable[[], None]:
    fwd = torch.compile(model, fullgraph=True) if compile else model
    if mode == 'eval':
        model.eval()

        def run() -> None:
            with torch.no_grad(), measure.autocast(x.device, dtype):
                fwd(x)
        return run
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-5)

    def step() -> None:
        with measure.autocast(x.device, dtype):
            loss = fwd(x).float().square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def measure_dcn_train_memory(config: str, variant: str, batch_size: int, img_size: int,
                             device: str = 'cpu') -> Dict[str, float]:
    """Peak memory (MiB) of one DLASeg training step with ``config`` nodes, in a fresh subprocess (as ``bench``)."""
    return measure.run_child('benchmarks.bench_dcn', dict(config=config, variant=variant, batch_size=batch_size,
                                                  img_size=img_size, device=device))


def _memory_child(config: str, variant: str, batch_size: int, img_size: int, device: str) -> Dict[str, float]:
    dev = torch.device(device)
    model = _dcn_models(variant, img_size, dev)[config]
    step = _model_step(model, 'train', 'fp32', torch.randn(batch_size, 3, img_size, img_size, device=dev), False)
    return measure.step_peak_mib(step, dev)


def run_dcn_bench(device: str = 'cpu', dtypes: Sequence[str] = ('fp32',), compile: bool = False, rounds: int = 5,
                  warmup: int = 1, smoke: bool = False, op_shape: Optional[Sequence[int]] = None,
                  variant: str = 'dla34', batch_size: int = 2, img_size: int = 128, model: bool = True,
                  memory: bool = True, progress: bool = True) -> Dict[str, Any]:
    """Benchmark deformable conv implementations (op and DLASeg level); returns a JSON-able dict.

    Args:
        device: 'cpu' or 'cuda' (CUDA timings synchronise the device).
        dtypes: of 'fp32', 'bf16', 'fp16': ops run in that dtype, models under autocast to it.
        compile: also time ``torch.compile(fullgraph=True)`` of the native op and of the models.
        smoke: tiny shapes, one round, no memory subprocesses (a dry run for CI).
        op_shape: ``(batch, C_in, C_out, H, W)`` of the single 3x3 conv (default: the DLA-Up node of issue 10).
        model: include the ``DLASeg(variant)`` section (batch ``batch_size``, ``img_size`` square images).
        memory: include peak training-step memory of the three DLASeg configurations.
    """
    for d in dtypes:
        if d not in measure.DTYPES:
            raise ValueError(f'dtypes: unknown dtype {d!r}; allowed: {list(measure.DTYPES)}')
    if device not in ('cpu', 'cuda') and not device.startswith('cuda:'):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    dev = torch.device(device)
    if smoke:
        op_shape, rounds, warmup, batch_size, img_size, memory = SMOKE_OP_SHAPE, 1, 1, 1, 32, False
    shape = tuple(op_shape or OP_SHAPE)
    if len(shape) != 5:
        raise ValueError(f'op_shape: expected (batch, C_in, C_out, H, W), got {shape}')
    mmcv_op = _mmcv_op()
    result: Dict[str, Any] = dict(
        **measure.machine(dev, torchvision=measure.dist_version('torchvision')),
        settings=dict(dtypes=list(dtypes), compile=compile, rounds=rounds, warmup=warmup, smoke=smoke,
                      op_shape=list(shape), variant=variant, batch_size=batch_size, img_size=img_size),
        gemm_gflops=measure.gemm_flops(dev, n=256 if smoke else 1024) / 1e9, mmcv=mmcv_op is not None, ops=[],
        models=[])
    n, cin, cout, h, w = shape
    conv_gflop = 2 * n * cout * cin * 9 * h * w / 1e9
    for dtype in dtypes:
        t = _op_inputs(shape, dev, measure.DTYPES[dtype])
        impls: List[Tuple[str, str, bool]] = [(i, i, False) for i in OP_IMPLS if i != 'mmcv' or mmcv_op]
        if compile:
            impls.append(('native+compile', 'native', True))
        for mode in ('fwd', 'fwd+bwd'):
            fns = {key: _timed(_op_fn(impl, t, c), mode, list(t.values())) for key, impl, c in impls}
            sec = _section(fns, rounds, warmup, dev, f'op {mode} {dtype}', progress, 'conv')
            sec.update(dtype=dtype, mode=mode, conv_gflop=conv_gflop * (1 if mode == 'fwd' else 3))
            if mmcv_op is None:
                sec['unsupported']['mmcv'] = 'mmcv.ops is not importable'
            result['ops'].append(sec)
    if model:
        models = _dcn_models(variant, img_size, dev)
        x = torch.randn(batch_size, 3, img_size, img_size, device=dev)
        for dtype in dtypes:
            for mode in ('eval', 'train'):
                fns = {k: _model_step(m, mode, dtype, x, compile) for k, m in models.items()}
                sec = _section(fns, rounds, warmup, dev, f'DLASeg {mode} {dtype}', progress, 'conv')
                sec.update(dtype=dtype, mode=mode, compiled=compile)
                result['models'].append(sec)
        if memory:
            result['train_memory_mib'] = {k: measure_dcn_train_memory(k, variant, batch_size, img_size,
                                                                      str(dev))['peak_mib'] for k in models}
    return measure.finish(result)


def _cell(sec: Dict[str, Any], key: str) -> str:
    if key in sec['unsupported']:
        return 'n/a (' + sec['unsupported'][key].split(':')[0] + ')'
    if key not in sec['median_ms']:
        return '-'
    ratio = sec.get('ratio_vs_conv', {}).get(key)
    return f"{sec['median_ms'][key]:.1f}" + (f' ({ratio:.2f}x)' if ratio is not None and key != 'conv' else '')


def to_markdown(result: Dict[str, Any]) -> str:
    """Tables: op and DLASeg times in ms (paired ratio to the conv), native's speedup, peak training memory."""
    s, m = result['settings'], result['machine']
    n, cin, cout, h, w = s['op_shape']
    out = [f"device {m['device']} ({m['device_name']}, {m['torch_threads']} threads), load average "
           f"{m['loadavg_start'][0]:.1f} at start, {m['loadavg_end'][0]:.1f} at end; {s['rounds']} interleaved "
           f"rounds; GEMM peak {result['gemm_gflops']:.0f} GFLOP/s (fp32). Cells: median ms (median of per-round "
           'ratios to the plain conv of the same shape).', '',
           f'One 3x3 modulated deformable conv, {cin} -> {cout} channels, {h}x{w}, batch {n}:', '']
    keys = [k for k in ('conv', 'native', 'native+compile', 'torchvision', 'mmcv')
            if any(k in sec['median_ms'] or k in sec['unsupported'] for sec in result['ops'])]
    out += ['| dtype | pass | ' + ' | '.join(keys) + ' | native speedup vs torchvision | vs mmcv |',
            '|' + '---|' * (len(keys) + 4)]
    for sec in result['ops']:
        sp = sec.get('speedup_of_native', {})
        out.append(f"| {sec['dtype']} | {sec['mode']} | " + ' | '.join(_cell(sec, k) for k in keys) + ' | '
                   + ' | '.join(f'{sp[k]:.2f}x' if k in sp else '-' for k in ('torchvision', 'mmcv')) + ' |')
    if result['models']:
        out += ['', f"`DLASeg('{s['variant']}')`, batch {s['batch_size']}, {s['img_size']}x{s['img_size']}"
                + (', torch.compile' if s['compile'] else '') + ':', '',
                '| dtype | mode | ' + ' | '.join(NODE_CONFIGS) + ' | native speedup vs torchvision |',
                '|---|---|---|---|---|---|']
        for sec in result['models']:
            sp = sec.get('speedup_of_native', {}).get('dcn-torchvision')
            out.append(f"| {sec['dtype']} | {sec['mode']} | " + ' | '.join(_cell(sec, k) for k in NODE_CONFIGS)
                       + f" | {f'{sp:.2f}x' if sp else '-'} |")
    if 'train_memory_mib' in result:
        mem = result['train_memory_mib']
        out += ['', 'Peak training-step memory (MiB): '
                + ', '.join(f'{k} {v:.0f}' for k, v in mem.items()) + '.']
    return '\n'.join(out)


def plot(result: Dict[str, Any], path: str) -> None:
    """Bar chart: time relative to the plain conv (op level) and to the conv-node DLASeg (model level)."""
    secs = [('op', s) for s in result['ops']] + [('DLASeg', s) for s in result['models']]
    secs = [(lvl, s) for lvl, s in secs if 'ratio_vs_conv' in s]
    keys = sorted({k for _, s in secs for k in s['ratio_vs_conv'] if k != 'conv'})
    measure.bar_chart(path, [f"{lvl}\n{s['mode']} {s['dtype']}" for lvl, s in secs],
              {k: [s['ratio_vs_conv'].get(k, 0) for _, s in secs] for k in keys}, 'time / plain-conv time',
              f"deformable conv vs plain conv, {result['machine']['device']}", log=True, hline=1)


def build_parser() -> argparse.ArgumentParser:
    bd = argparse.ArgumentParser(prog='python -m benchmarks.bench_dcn',
                                 description='Interleaved benchmark of deform_conv2d implementations (native, '
                                             "torchvision, mmcv's op when importable) against a plain 3x3 conv, "
                                             'forward and backward, and of DLASeg with deformable nodes against the '
                                             'conv-node model. Writes NAME.json, NAME.md and NAME.png into --out.')
    bd.add_argument('--device', default='cpu', help='cpu or cuda (default cpu)')
    bd.add_argument('--dtypes', default='fp32', help="comma-separated of 'fp32', 'bf16', 'fp16'")
    bd.add_argument('--compile', action='store_true', help='also torch.compile the native op and the models')
    bd.add_argument('--op-shape', default=None, help='B,C_in,C_out,H,W of the single conv (default 2,128,64,64,64)')
    bd.add_argument('--variant', default='dla34', help='DLASeg backbone (default dla34)')
    bd.add_argument('--batch-size', type=int, default=2)
    bd.add_argument('--img-size', type=int, default=128)
    bd.add_argument('--no-model', action='store_true', help='skip the DLASeg section')
    bd.add_argument('--smoke', action='store_true', help='tiny shapes, one round (CI dry run)')
    measure.add_run_options(bd, 'bench_dcn')
    return bd


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m benchmarks.bench_dcn``."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = [int(v) for v in args.op_shape.split(',')] if args.op_shape else None
    res = run_dcn_bench(args.device, dtypes=args.dtypes.split(','), compile=args.compile, rounds=args.rounds,
                        warmup=args.warmup, smoke=args.smoke, op_shape=shape, variant=args.variant,
                        batch_size=args.batch_size, img_size=args.img_size, model=not args.no_model,
                        memory=not args.no_memory, progress=not args.no_progress)
    return measure.write_results(res, args.out, args.name, to_markdown, plot)


if __name__ == '__main__':
    if not measure.child_main(_memory_child):
        sys.exit(main())
