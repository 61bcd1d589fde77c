"""``python -m benchmarks.bench_deploy``: latency per runtime of the deployed models, one interleaved run.

For each model (the dla34 classifier, the deformable CenterNet-flavour DLASeg, the CenterNet ctdet detector) every
configuration -- eager PyTorch, torch.compile, onnxruntime and OpenVINO at fp32 / fp16 / int8 in the form each runtime
runs natively (plus OpenVINO's standard-operator 'plain' form, the alternative to its own deformable op) -- is
timed once per round at batch 1, rounds repeat, and each ratio to eager is the median of per-round ratios
(:mod:`benchmarks.measure`). The ONNX files come from :func:`dla_plugins.deploy.pipeline.deploy_onnx`, so each is
checked against eager (fp32) or reports its agreement on a held-out batch (fp16/int8) before it is timed.
Weights are fresh (seeded): latency does not depend on them, agreement does (docs/deploy.md).
"""
import argparse
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from benchmarks import measure

__all__ = ['MODELS', 'CONFIGS', 'run_bench_deploy', 'to_markdown', 'plot', 'main']

MODELS = ('classifier', 'seg', 'centernet')
CONFIGS = ('eager', 'compile', 'onnxruntime fp32', 'onnxruntime fp16', 'onnxruntime int8', 'openvino fp32',
           'openvino plain fp32', 'openvino half', 'openvino int8')


def _build(what: str, variant: str) -> nn.Module:
    from dla_plugins.deploy.source import build_from_source

    torch.manual_seed(0)
    if what == 'classifier':
        return build_from_source(variant, 'classifier')
    if what == 'seg':  # CenterNet's network under a segmentation classifier: deformable DLA-Up
        from dla_plugins import DLASeg

        return DLASeg(variant, num_classes=19, node_type='dcn', flavor='centernet', output_stride=32).eval()
    return build_from_source(variant, 'centernet', node_type='dcn')


def _onnx_fn(model: nn.Module, what: str, config: str, tmp: str, size: Tuple[int, int], x: torch.Tensor,
             calibration: int) -> Tuple[Callable[[], Any], Dict[str, Any]]:
    """Export ``model`` for ``config`` ('RUNTIME PRECISION'), check it, and return the timed call and the check."""
    from dla_plugins.deploy.pipeline import deploy_onnx
    from dla_plugins.deploy.runtimes import load_onnx

    runtime, *rest = config.split()
    precision = rest[-1].replace('half', 'fp16')
    deform = 'plain' if 'plain' in rest else None
    path = os.path.join(tmp, config.replace(' ', '_') + '.onnx')
    report = deploy_onnx(model, path, runtime, precision, size, what, calibration_size=calibration, deform=deform)
    run = load_onnx(path, runtime, half=precision == 'fp16')
    xs = x.numpy()
    check = dict(form=report.form, max_abs=report.max_abs, agreement=report.agreement.get(runtime))
    return (lambda: run(xs)), check


def _torch_fn(model: nn.Module, config: str, x: torch.Tensor) -> Callable[[], Any]:
    fn = torch.compile(model, fullgraph=False) if config == 'compile' else model

    def run() -> Any:
        with torch.inference_mode():
            return fn(x)

    return run


def _bench_model(what: str, variant: str, size: Tuple[int, int], configs: Sequence[str], rounds: int, warmup: int,
                 calibration: int, progress: bool) -> Dict[str, Any]:
    model = _build(what, variant)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    fns: Dict[str, Callable[[], Any]] = {}
    checks: Dict[str, Dict[str, Any]] = {}
    has_dcn = any(type(m).__name__ == 'ModulatedDeformConv2d' for m in model.modules())
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            if config == 'openvino plain fp32' and not has_dcn:
                continue  # the same graph as 'openvino fp32' without deformable nodes
            if config in ('eager', 'compile'):
                fns[config] = _torch_fn(model, config, x)
            else:
                fns[config], checks[config] = _onnx_fn(model, what, config, tmp, size, x, calibration)
        times = measure.interleaved(fns, rounds, warmup, torch.device('cpu'), f'{what} {variant}', progress)
    rows = {}
    for config, t in times.items():
        rows[config] = dict(ms=1e3 * sorted(t)[len(t) // 2], speedup=measure.median_ratio(times['eager'], t),
                            **checks.get(config, {}))
    return dict(model=what, variant=variant, img_size=list(size), configs=rows)


def run_bench_deploy(variant: str = 'dla34', models: Sequence[str] = MODELS, sizes: Optional[Dict[str, int]] = None,
                     configs: Sequence[str] = CONFIGS, rounds: int = 5, warmup: int = 2, calibration: int = 16,
                     progress: bool = True) -> Dict[str, Any]:
    """Benchmark every model in every configuration (module doc); returns a JSON-able dict."""
    sizes = {'classifier': 224, 'seg': 384, 'centernet': 384, **(sizes or {})}
    dev = torch.device('cpu')
    result: Dict[str, Any] = dict(
        settings=dict(variant=variant, batch_size=1, sizes=sizes, rounds=rounds, warmup=warmup,
                      calibration_images=calibration, configs=list(configs)),
        **measure.machine(dev, onnxruntime=measure.dist_version('onnxruntime'),
                          openvino=measure.dist_version('openvino')))
    result['results'] = [_bench_model(m, variant, (sizes[m], sizes[m]), configs, rounds, warmup, calibration,
                                      progress) for m in models]
    return measure.finish(result)


def _check_text(row: Dict[str, Any]) -> str:
    if row.get('max_abs') is not None:
        return f"max abs {row['max_abs']:.1e}"
    agree = row.get('agreement') or {}
    return ', '.join(f'{k} {v:.3g}' for k, v in agree.items()) or '-'


def to_markdown(result: Dict[str, Any]) -> str:
    """One table: model, configuration, deformable form, latency, ratio to eager, check against eager."""
    lines = ['| model | size | configuration | deformable form | ms (median) | vs eager | check against eager fp32 |',
             '|---|---|---|---|---|---|---|']
    for r in result['results']:
        for config, row in r['configs'].items():
            lines.append(f"| {r['variant']} {r['model']} | {r['img_size'][0]} | {config} | {row.get('form', '-')} | "
                         f"{row['ms']:.1f} | **{row['speedup']:.2f}x** | {_check_text(row)} |")
    m = result['machine']
    lines.append(f"\n{m['cpu_count']} CPUs, {m['torch_threads']} torch threads, load average "
                 f"{m['loadavg_start'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end; " +
                 ', '.join(f'{k} {v}' for k, v in result['versions'].items()))
    return '\n'.join(lines)


def plot(result: Dict[str, Any], path: str) -> None:
    """Speed-up over eager per configuration, one group per model."""
    configs = [c for c in result['settings']['configs'] if c != 'eager']
    groups = [f"{r['variant']} {r['model']} {r['img_size'][0]}px" for r in result['results']]
    series = {c: [r['configs'].get(c, {}).get('speedup', 0.0) for r in result['results']] for c in configs}
    measure.bar_chart(path, groups, series, 'speed-up over eager (x)', 'Latency at batch 1, ratios to eager PyTorch',
                      hline=1.0)


def build_parser() -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog='python -m benchmarks.bench_deploy',
                                description='Interleaved latency of eager, torch.compile, onnxruntime and OpenVINO '
                                            '(fp32/fp16/int8) for the classifier, deformable DLASeg and CenterNet. '
                                            'Writes NAME.json, NAME.md and NAME.png into --out.')
    b.add_argument('--variant', default='dla34')
    b.add_argument('--models', default=','.join(MODELS), help='comma-separated of ' + ', '.join(MODELS))
    b.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated of: ' + ', '.join(CONFIGS))
    b.add_argument('--size', action='append', default=[], metavar='MODEL=PX',
                   help='input size per model (default classifier=224, seg=384, centernet=384)')
    b.add_argument('--calibration', type=int, default=16, help='synthetic images calibrating int8')
    measure.add_run_options(b, 'deploy')
    return b


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m benchmarks.bench_deploy``."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [c.strip() for c in args.configs.split(',')]
    unknown = [c for c in configs if c not in CONFIGS] + [m for m in args.models.split(',') if m not in MODELS]
    if unknown or 'eager' not in configs:
        raise SystemExit(f'bench_deploy: error: configs/models {unknown}; allowed configs (eager required): '
                         f'{list(CONFIGS)}, models: {list(MODELS)}')
    sizes = {k: int(v) for k, v in (s.split('=') for s in args.size)}
    res = run_bench_deploy(args.variant, args.models.split(','), sizes, configs, args.rounds, args.warmup,
                           args.calibration, not args.no_progress)
    return measure.write_results(res, args.out, args.name, to_markdown, plot)


if __name__ == '__main__':
    sys.exit(main())
