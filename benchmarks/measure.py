"""The one measurement harness every benchmark here uses.

- :func:`interleaved` times every configuration once per round, rounds repeat, so all sides share the machine's
  load within a round; :func:`median_ratio` pairs rounds (a ratio of per-round ratios, not of medians).
- :func:`run_child` / :func:`child_main` run one measurement in a fresh process (peak memory of one training step:
  :func:`step_peak_mib`), so one model's allocations never count towards another's.
- :func:`machine` records where a result was measured, :func:`gemm_flops` the machine's dense-GEMM ceiling.
- :func:`bar_chart`, :func:`write_results` and :func:`add_run_options` are the shared output and command line.
"""
import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from dla_plugins.tools.cli import variant_list

__all__ = ['ROOT', 'DTYPES', 'sync', 'autocast', 'timm_reference', 'gemm_flops', 'interleaved', 'median_ratio',
           'dist_version', 'machine', 'finish', 'step_peak_mib', 'child_env', 'run_child', 'child_main', 'search_max',
           'bar_chart', 'variant_list', 'add_run_options', 'write_results']

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The repository root (the benchmarks run from a checkout)."""
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
_CHILD_FLAG = '--_measure-child'


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA timings are asynchronous)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> ContextManager:
    """Autocast to ``dtype`` ('bf16'/'fp16'); 'fp32' runs as it is."""
    return nullcontext() if dtype == 'fp32' else torch.autocast(device.type, dtype=DTYPES[dtype])


def timm_reference(name: str, **kwargs: Any) -> nn.Module:
    """The anchor: timm's built-in DLA, from ``timm.models.dla`` itself (the registry may hold ours via timm_ext)."""
    import timm.models.dla as timm_dla

    if not hasattr(timm_dla, name):
        raise ValueError(f'variant: timm has no DLA named {name!r}')
    return getattr(timm_dla, name)(**kwargs)


def gemm_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: Optional[int] = None,
               iters: int = 10) -> float:
    """Measured dense-GEMM throughput (FLOP/s, 2 flops per multiply-add): the machine's practical ceiling.

    ``n`` (square matrices) defaults to 8192 on CUDA (large enough to saturate a data-centre GPU's tensor cores)
    and 1024 on the CPU; the best of ``iters`` timed products is reported.
    """
    device = torch.device(device)
    if n is None:
        n = 8192 if device.type == 'cuda' else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    times = interleaved({'gemm': lambda: a @ b}, iters, 2, device, 'gemm', False)['gemm']
    return 2 * n ** 3 / min(times)


def interleaved(fns: Mapping[str, Callable[[], Any]], rounds: int, warmup: int, device: torch.device, desc: str,
                progress: bool) -> Dict[str, List[float]]:
    """Seconds per call of every function, per round: ``warmup`` untimed calls each, then ``rounds`` rounds in
    which each function runs once (the device synchronised around every call)."""
    from tqdm.auto import tqdm

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    times: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in tqdm(range(rounds), desc=desc, disable=not progress, leave=False):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return times


def median_ratio(slow: Sequence[float], fast: Sequence[float]) -> float:
    """Median over rounds of ``slow[i] / fast[i]``: > 1 means ``fast`` is faster."""
    return statistics.median(a / b for a, b in zip(slow, fast))


def dist_version(dist: str) -> Optional[str]:
    """The installed version of distribution ``dist`` (read from its metadata, not imported), or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(device: torch.device, **extra_versions: Optional[str]) -> Dict[str, Any]:
    """Where a result was measured: platform, threads, device and the load average at the start."""
    return dict(machine=dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                             cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(), device=str(device),
                             device_name=torch.cuda.get_device_name(device) if device.type == 'cuda'
                             else platform.machine(), loadavg_start=list(os.getloadavg())),
                versions=dict(python=platform.python_version(), torch=torch.__version__,
                              **{k: v for k, v in extra_versions.items() if v}))


def finish(result: Dict[str, Any]) -> Dict[str, Any]:
    """Record the load average at the end of a run (next to the one :func:`machine` took at its start)."""
    result['machine']['loadavg_end'] = list(os.getloadavg())
    return result


def _status_mib(field: str) -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f'/proc/self/status has no {field}')


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def step_peak_mib(step: Callable[[], None], device: torch.device) -> Dict[str, float]:
    """Peak memory (MiB) of one call of ``step`` after a full-size warm-up call.

    CUDA: ``max_memory_allocated`` minus the memory allocated before the step (plus the process total and the
    device's memory). CPU: the kernel's peak-RSS mark is reset and its growth over the RSS before the step is
    reported; large blocks are mmapped (:func:`run_child` sets ``MALLOC_MMAP_THRESHOLD_``), so RSS follows live
    memory. Without ``/proc/self/clear_refs`` the process-lifetime peak is used (it includes the warm-up).
    """
    step()  # warm-up at full size: optimizer state, cuDNN workspaces / oneDNN caches, allocator pools
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return dict(peak_mib=round((peak - before) / 2 ** 20, 1), total_mib=round(peak / 2 ** 20, 1),
                    device_mib=round(torch.cuda.get_device_properties(device).total_memory / 2 ** 20, 1))
    reset = _reset_peak_rss()
    before = _status_mib('VmRSS')
    step()
    peak = _status_mib('VmHWM') if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(peak_mib=round(peak - before, 1))


def child_env() -> Dict[str, str]:
    """This process's environment with the checkout first on ``PYTHONPATH`` (children import ``benchmarks``)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))


def run_child(module: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``python -m module`` in a fresh process on ``spec`` (its :func:`child_main` handles it); its JSON result.

    A child that runs out of GPU memory returns ``{'oom': True}``; any other failure raises with its stderr.
    """
    env = child_env()
    env.setdefault('MALLOC_MMAP_THRESHOLD_', '65536')  # large blocks are mmapped and unmapped on free: RSS ~ live
    out = subprocess.run([sys.executable, '-m', module, _CHILD_FLAG, json.dumps(spec)], capture_output=True,
                         text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f'measurement failed for {spec}: {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_main(measure: Callable[..., Dict[str, Any]], argv: Optional[Sequence[str]] = None) -> bool:
    """In a benchmark's ``__main__``: if started by :func:`run_child`, print ``measure(**spec)`` as JSON (or
    ``{'oom': true}``) and return True; otherwise return False."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 2 or argv[0] != _CHILD_FLAG:
        return False
    try:
        res = measure(**json.loads(argv[1]))
    except torch.OutOfMemoryError:
        res = dict(oom=True)
    print(json.dumps(res))
    return True


def search_max(fits: Callable[[int], bool], start: int, limit: int, resolution: float = 0.05,
               max_probes: int = 16) -> Tuple[int, Optional[int]]:
    """(largest n known to fit, smallest n known not to fit or None) for a monotone ``fits``: doubling from
    ``start`` up to ``limit``, then bisection until the bracket is within ``resolution`` of the answer (or 1), with
    at most ``max_probes`` calls of ``fits``."""
    lo, hi, n, probes = 0, None, start, 0
    while hi is None and probes < max_probes:
        probes += 1
        if fits(n):
            lo = n
            if n >= limit:
                break
            n = min(2 * n, limit)
        else:
            hi = n
    while hi is not None and hi - lo > max(1, int(resolution * lo)) and probes < max_probes:
        probes += 1
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def bar_chart(path: str, groups: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str, title: str,
              log: bool = False, labels: Optional[Sequence[str]] = None, hline: Optional[float] = None) -> None:
    """Grouped bar chart: one group per ``groups`` entry, one bar per ``series`` entry; ``labels`` over groups."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(groups) + 1), 4))
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        ax.bar([i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))], values, width, label=name)
    for i, text in enumerate(labels or ()):
        ax.text(i, max(v[i] for v in series.values()), text, ha='center', va='bottom')
    if hline is not None:
        ax.axhline(hline, color='k', lw=0.8)
    ax.set_xticks(list(range(len(groups))))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale('log')
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
