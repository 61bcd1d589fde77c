"""``python -m benchmarks.gpu_check``: every CUDA path of the project in one command, with what it measured.

Steps (each records pass/fail, its figures and its checks; hosts are imported lazily, host training runs as
subprocesses of the real entries):

- ``bench``: :func:`~benchmarks.bench.run_bench` ours vs timm's DLA (same weights, interleaved), train and
  eval, bf16 autocast, NCHW and channels_last, eager and ``torch.compile(fullgraph=True)``; achieved FLOP/s as a
  fraction of a dense bf16 GEMM measured in the same run; peak step memory; the largest training batch that fits
  (timm, ours, ours with gradient checkpointing) by :func:`~benchmarks.bench.max_train_batch`.
- ``dcn``: ``benchmarks.bench_dcn.run_dcn_bench`` (native vs torchvision deformable conv), eager and compiled.
- ``timm``: ``python -m timm_ext.train`` on the synthetic shapes ImageFolder (AMP bf16, channels_last, compile).
- ``d2``: ``python -m d2_ext.train_net`` with a DLA-Up Faster R-CNN on synthetic shapes (``SOLVER.AMP.ENABLED``).
- ``mmseg``: ``python -m mmseg_ext.train`` with the DLAUpHead Cityscapes config on synthetic shapes (``--amp``:
  ``AmpOptimWrapper``, bf16).
- ``centernet``: CenterNet's ctdet detector (:class:`dla_plugins.CenterNet`, DLA-34 + deformable DLA-Up, 512x512,
  batch 1, network + top-100 decode) in frames per second: fp32 eager, fp16 autocast, fused (BN folded) and
  ``torch.compile``; CenterNet publishes 52 FPS on a TITAN Xp without flip test (readme/MODEL_ZOO.md).

``smoke=True`` runs the same pipeline at toy sizes with CPU-safe options (dynamo's ``eager`` backend instead of
inductor, no AMP); there a step passes when it ran and produced its figures. A full run also requires each training
loss to fall and each metric to beat chance. The speed goals are recorded, never asserted.
"""
import argparse
import gc
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.bench import max_train_batch, run_bench, to_markdown
from benchmarks.bench_dcn import run_dcn_bench
from benchmarks.measure import ROOT, child_env, dist_version, variant_list

__all__ = ['STEPS', 'DOCS_BEGIN', 'DOCS_END', 'Sizes', 'FULL', 'SMOKE', 'run_gpu_check', 'summary_table',
           'docs_section', 'write_docs_section', 'environment']

STEPS = ('bench', 'dcn', 'timm', 'd2', 'mmseg', 'centernet')
DOCS_BEGIN = '<!-- gpu-check:begin (written by `python -m benchmarks.gpu_check`; edits inside are replaced) -->'
DOCS_END = '<!-- gpu-check:end -->'
SHAPES_CHANCE = 0.25  # 4 balanced shape classes


@dataclass(frozen=True)
class Sizes:
    """Every size of a gpu-check run (see :data:`FULL` and :data:`SMOKE`)."""
    smoke: bool
    variants: Tuple[str, ...]
    batch_size: int
    img_size: int
    formats: Tuple[str, ...]
    rounds: int
    warmup: int
    compile_backend: str
    gemm_size: Optional[int]
    search_start: int
    search_budget_mib: Optional[float]
    search_resolution: float
    search_max_probes: int
    dcn_rounds: int
    timm_model: str
    timm_img: int
    timm_batch: int
    timm_epochs: int
    timm_images: Tuple[int, int]
    timm_workers: int
    d2_config: str
    d2_arch: str
    d2_img: int
    d2_batch: int
    d2_iters: int
    d2_images: int
    d2_channels: int
    mmseg_arch: str
    mmseg_img: int
    mmseg_batch: int
    mmseg_iters: int
    mmseg_images: Tuple[int, int]
    centernet_img: int = 512
    centernet_rounds: int = 50


FULL = Sizes(smoke=False, variants=('dla34', 'dla60x', 'dla102'), batch_size=256, img_size=224,
             formats=('nchw', 'cl'), rounds=10, warmup=3, compile_backend='inductor', gemm_size=None,
             search_start=256, search_budget_mib=None, search_resolution=0.05, search_max_probes=12, dcn_rounds=20,
             timm_model='dla34', timm_img=96, timm_batch=64, timm_epochs=4, timm_images=(2048, 512), timm_workers=8,
             d2_config='faster_rcnn_dla34_up_1x.yaml', d2_arch='dla34', d2_img=128, d2_batch=16, d2_iters=300,
             d2_images=512, d2_channels=64,
             mmseg_arch='dla34', mmseg_img=128, mmseg_batch=16, mmseg_iters=300, mmseg_images=(256, 32))
SMOKE = Sizes(smoke=True, variants=('dla46_c',), batch_size=2, img_size=32, formats=('cl',), rounds=1, warmup=1,
              compile_backend='eager', gemm_size=256, search_start=2, search_budget_mib=64.0, search_resolution=0.5,
              search_max_probes=1, dcn_rounds=1,
              timm_model='dla46_c', timm_img=32, timm_batch=16, timm_epochs=2, timm_images=(64, 32), timm_workers=0,
              d2_config='faster_rcnn_dla34_up_1x.yaml', d2_arch='dla46_c', d2_img=64, d2_batch=2, d2_iters=40,
              d2_images=8, d2_channels=16,
              mmseg_arch='dla46_c', mmseg_img=32, mmseg_batch=4, mmseg_iters=20, mmseg_images=(8, 4),
              centernet_img=64, centernet_rounds=1)


def environment(device: str) -> Dict[str, Any]:
    """Device, driver and versions (hosts read from their installed metadata, not imported)."""
    env: Dict[str, Any] = dict(device=device, python=platform.python_version(), platform=platform.platform(),
                               cpu_count=os.cpu_count(), torch=torch.__version__, cuda=torch.version.cuda,
                               date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    for key, dist in (('torchvision', 'torchvision'), ('timm', 'timm'), ('numpy', 'numpy'), ('mmcv', 'mmcv'),
                      ('mmengine', 'mmengine'), ('mmseg', 'mmsegmentation'), ('fvcore', 'fvcore')):
        env[key] = dist_version(dist)
    env['detectron2'] = dist_version('sal-detectron2') or dist_version('detectron2')
    if device.startswith('cuda'):
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(device_name=props.name, device_memory_gib=round(props.total_memory / 2 ** 30, 1),
                   multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version())
        if shutil.which('nvidia-smi'):
            out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                 capture_output=True, text=True, check=False)
            env['driver'] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    else:
        env['device_name'] = platform.processor() or platform.machine()
    return env


# ---------------------------------------------------------------------------------------------------------- helpers
def _child_env(device: str) -> Dict[str, str]:
    env = child_env()
    if device == 'cpu':
        env.setdefault('OMP_NUM_THREADS', '1')  # tiny CPU steps: one thread beats oversubscribed ones
    return env


def _run_entry(args: List[str], log_path: str, device: str, timeout: float = 3600) -> str:
    """Run ``python ARGS`` (a real entry) from the repository root; its output goes to ``log_path`` and is returned."""
    cmd = [sys.executable, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(device), cwd=ROOT, timeout=timeout,
                          check=False)
    text = f'$ {" ".join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}'
    with open(log_path, 'w') as f:
        f.write(text)
    if proc.returncode != 0:
        raise RuntimeError(f'{args[1] if len(args) > 1 else args[0]} exited with {proc.returncode} '
                           f'(log: {log_path}):\n{proc.stderr[-1500:]}')
    return proc.stdout


def _release_gpu_memory() -> None:
    """Give this process's cached GPU blocks back, so the subprocesses that follow can use (and measure) them."""
    if torch.cuda.is_initialized():
        torch.compiler.reset()  # compiled graphs may hold on to models
        gc.collect()
        torch.cuda.empty_cache()


def _save(obj: Any, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2, default=str)
    _release_gpu_memory()


def _loss_checks(losses: Sequence[float], metric: Optional[float], chance: float) -> Dict[str, bool]:
    return dict(losses_recorded=len(losses) >= 1, loss_falls=len(losses) >= 2 and losses[-1] < losses[0],
                metric_present=metric is not None, metric_above_chance=metric is not None and metric > chance)


def _training_result(losses: Sequence[float], metric_name: str, metric: Optional[float], chance: float,
                     **extra: Any) -> Dict[str, Any]:
    figures = dict(loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
                   losses=list(losses), metric=metric_name, value=metric, chance=chance, **extra)
    return dict(figures=figures, checks=_loss_checks(losses, metric, chance))


# ------------------------------------------------------------------------------------------------------------ steps
def step_bench(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """Throughput (eager and compiled), memory and the largest batch, ours vs timm; figures + recorded goals."""
    common = dict(batch_size=sizes.batch_size, img_size=sizes.img_size, modes=('train', 'eval'), dtypes=('bf16',),
                  formats=sizes.formats, rounds=sizes.rounds, warmup=sizes.warmup, device=device, progress=False,
                  gemm_size=sizes.gemm_size)
    # The largest-batch probes first, while this process holds no GPU memory beyond its CUDA context (its cached
    # blocks would shrink what the probe subprocesses can allocate).
    search = [max_train_batch(impl, sizes.variants[0], sizes.img_size, device, 'cl', ckpt, 'bf16',
                              start=sizes.search_start, budget_mib=sizes.search_budget_mib,
                              resolution=sizes.search_resolution, max_probes=sizes.search_max_probes)
              for impl, ckpt in (('timm', False), ('ours', False), ('ours', True))]
    with open(os.path.join(out, 'bench_max_batch.json'), 'w') as f:
        json.dump(search, f, indent=2)
    # smoke: no separate memory subprocesses (the largest-batch probes above ran the same measurement)
    runs = {'eager': run_bench(sizes.variants, compile=False, memory=not sizes.smoke, **common)}
    _save(runs['eager'], os.path.join(out, 'bench_eager.json'))
    compile_error = None
    try:
        runs['compiled'] = run_bench(sizes.variants, compile=True, memory=False, compile_backend=sizes.compile_backend,
                                     **common)
        _save(runs['compiled'], os.path.join(out, 'bench_compiled.json'))
    except Exception as e:  # noqa: BLE001 - a graph break (fullgraph=True) or a compiler failure is a finding
        compile_error = f'{type(e).__name__}: {str(e)[:500]}'
    rows = [r for res in runs.values() for r in res['results'] if r['mode'] in ('train', 'eval')]
    lead = sizes.variants[0]

    def row(mode: str, compiled: bool) -> Optional[Dict[str, Any]]:
        return next((r for r in rows if r['variant'] == lead and r['mode'] == mode and r['compiled'] == compiled),
                    None)

    eager_train, compiled_train = row('train', False), row('train', True)
    ours_cl = {k: r['configs'][k]['img_s'] for r in (eager_train, compiled_train) if r for k in r['configs']
               if k.startswith('ours:cl')}
    best_cl = max(ours_cl, key=ours_cl.get) if ours_cl else None
    timm_eager = eager_train['timm']['img_s']
    best_fraction = max(r['ours'].get('fraction_of_gemm_peak', 0.0) for r in (eager_train, compiled_train) if r)
    batches = {('ours_grad_ckpt' if s['grad_checkpointing'] else s['impl']): s['max_batch'] for s in search}
    speedup = ours_cl[best_cl] / timm_eager if ours_cl else None  # separate runs when compiled: not interleaved
    batch_ratio = batches['ours_grad_ckpt'] / max(batches['timm'], 1)
    goals = dict(
        train_cl_vs_timm_eager=dict(goal='>= 1.2', value=speedup, met=speedup is not None and speedup >= 1.2,
                                    ours=best_cl, timm=eager_train['timm']['best'], variant=lead),
        train_fraction_of_bf16_gemm=dict(goal='>= 0.40', value=best_fraction, met=best_fraction >= 0.4),
        compile_without_graph_breaks=dict(goal=f'fullgraph=True compiles ({sizes.compile_backend})',
                                          value=compile_error is None, met=compile_error is None),
        ckpt_max_batch_vs_timm=dict(goal='> 1', value=batch_ratio, met=batch_ratio > 1))
    md = '\n\n'.join(f'**{name}**: ' + to_markdown(res) for name, res in runs.items())
    figures = dict(gemm_flops=runs['eager']['gemm_flops'], throughput=[
        dict(variant=r['variant'], mode=r['mode'], compiled=r['compiled'], ours_img_s=r['ours']['img_s'],
             timm_img_s=r['timm']['img_s'], speedup=r['speedup'], ours_best=r['ours']['best'],
             ours_fraction_of_gemm=r['ours'].get('fraction_of_gemm_peak'),
             timm_fraction_of_gemm=r['timm'].get('fraction_of_gemm_peak')) for r in rows],
        memory=[r for r in runs['eager']['results'] if r['mode'] == 'train_memory'], max_batch=search,
        compile_error=compile_error, markdown=md)
    checks = dict(eager_ran=bool(rows), compiled_ran=compile_error is None and 'compiled' in runs,
                  gemm_measured=runs['eager']['gemm_flops']['bf16'] > 0,
                  max_batch_found=all(s['max_batch'] > 0 for s in search))
    return dict(figures=figures, checks=checks, goals=goals)


def step_dcn(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """The deformable-conv benchmark (native vs torchvision), eager and compiled."""
    smoke = sizes.smoke
    kwargs: Dict[str, Any] = dict(device=device, dtypes=('fp32',) if device == 'cpu' else ('fp32', 'bf16'),
                                  rounds=sizes.dcn_rounds, smoke=smoke)
    results = {'eager': run_dcn_bench(compile=False, **kwargs)}
    if not smoke:  # inductor on a CPU compiles C++ for minutes: the smoke run proves the eager path only
        results['compiled'] = run_dcn_bench(compile=True, **kwargs)
    with open(os.path.join(out, 'dcn.json'), 'w') as f:
        json.dump(results, f, indent=2, default=str)
    # native's speed-up over torchvision, forward + backward, for every dtype and mode (eager/compiled) measured
    ratios = [op['speedup_of_native']['torchvision'] for res in results.values() for op in res.get('ops', [])
              if op.get('mode') == 'fwd+bwd' and op.get('speedup_of_native', {}).get('torchvision') is not None]
    goals = dict(dcn_native_vs_torchvision=dict(goal='>= 1 (fwd+bwd)', value=min(ratios) if ratios else None,
                                                met=bool(ratios) and min(ratios) >= 1.0,
                                                note="the smallest fwd+bwd speedup_of_native['torchvision'] of "
                                                     'dcn.json'))
    return dict(figures=dict(results=results), checks=dict(ran=all(bool(r) for r in results.values())), goals=goals)


def step_timm(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """``python -m timm_ext.train`` on the synthetic shapes ImageFolder; per-epoch train loss and val accuracy."""
    work = os.path.join(out, 'timm')
    data = os.path.join(work, 'shapes')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    n_train, n_val = sizes.timm_images
    _run_entry(['-m', 'timm_ext.train', '--make-synthetic', data, '--synthetic-train', str(n_train),
                '--synthetic-val', str(n_val), '--img-size', str(sizes.timm_img)],
               os.path.join(work, 'make_synthetic.log'), device)
    args = ['-m', 'timm_ext.train', '--data-dir', data, '--model', sizes.timm_model, '--epochs',
            str(sizes.timm_epochs), '--img-size', str(sizes.timm_img), '-b', str(sizes.timm_batch), '--workers',
            str(sizes.timm_workers), '--device', device, '--channels-last', '--output', os.path.join(work, 'out'),
            '--no-progress']
    if device.startswith('cuda'):
        args += ['--amp', '--compile']  # bf16 autocast where supported; the CPU smoke run stays eager and fp32
    start = time.time()
    log = _run_entry(args, os.path.join(work, 'train.log'), device)
    epochs = re.findall(r'epoch \d+/\d+ \| train loss ([\d.]+) \| val acc ([\d.]+)', log)
    losses = [float(loss) for loss, _ in epochs]
    accuracy = float(epochs[-1][1]) if epochs else None
    return _training_result(losses, 'val accuracy', accuracy, SHAPES_CHANCE, seconds=time.time() - start,
                            options=' '.join(a for a in args if a in ('--amp', '--compile', '--channels-last')),
                            model=sizes.timm_model, img_size=sizes.timm_img, batch_size=sizes.timm_batch,
                            epochs=sizes.timm_epochs)


def step_d2(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """``python -m d2_ext.train_net`` (DLA-Up Faster R-CNN, shrunk by ``d2_ext.demo.shapes_cfg``) on synthetic
    shapes; the windowed total loss and the bbox AP from detectron2's ``metrics.json``."""
    from d2_ext import get_config_file
    from d2_ext.demo import shapes_cfg

    work = os.path.join(out, 'd2')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cfg = shapes_cfg(get_config_file(sizes.d2_config), 'unused', 'unused', work, sizes.d2_iters,
                     arch=sizes.d2_arch, image_size=sizes.d2_img, channels=sizes.d2_channels,
                     batch_size=sizes.d2_batch, lr=0.02, device=device)
    cfg.SOLVER.AMP.ENABLED = device.startswith('cuda')  # AMPTrainer (fp16 autocast + GradScaler) needs CUDA
    cfg.DATALOADER.NUM_WORKERS = 4 if device.startswith('cuda') else 0
    cfg.SEED = 0
    cfg_path = os.path.join(work, 'config.yaml')
    with open(cfg_path, 'w') as f:
        f.write(cfg.dump())
    start = time.time()
    _run_entry(['-m', 'd2_ext.train_net', '--config-file', cfg_path, '--num-gpus', '1', '--synthetic-shapes',
                str(sizes.d2_images), '--synthetic-size', str(sizes.d2_img)], os.path.join(work, 'train.log'), device)
    losses, ap, ap50 = [], None, None
    with open(os.path.join(work, 'metrics.json')) as f:
        seen = set()
        for line in f:
            rec = json.loads(line)
            if 'total_loss' in rec and rec.get('iteration') not in seen:
                seen.add(rec.get('iteration'))
                losses.append(float(rec['total_loss']))  # median over the last 20 iterations
            ap = rec.get('bbox/AP', ap)
            ap50 = rec.get('bbox/AP50', ap50)
    # untrained detectors score AP ~0: chance is 0 (AP is in percent, NaN when nothing was detected)
    ap = None if ap is None or ap != ap else float(ap)
    return _training_result(losses, 'bbox AP', ap, 0.0, ap50=ap50, seconds=time.time() - start,
                            config=sizes.d2_config, arch=sizes.d2_arch, img_size=sizes.d2_img,
                            batch_size=sizes.d2_batch, iterations=sizes.d2_iters, amp=bool(cfg.SOLVER.AMP.ENABLED))


def step_mmseg(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """``python -m mmseg_ext.train`` (DLAUpHead Cityscapes config, shrunk by ``mmseg_ext.demo.tiny_config``) on
    synthetic shapes in the Cityscapes layout; losses and val mIoU from mmengine's ``scalars.json``."""
    try:
        import mmcv.ops  # noqa: F401 - mmseg imports it; on the GPU image it is built from the sdist

        from mmseg_ext.demo import CITYSCAPES_CONFIG, majority_class_miou, tiny_config
        from mmseg_ext.synthetic import write_cityscapes_layout
    except ImportError as e:
        return dict(status='skipped', note=f'mmseg stack not importable ({e}); see docs/install.md (GPU machine)')
    work = os.path.join(out, 'mmseg')
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    n_train, n_val = sizes.mmseg_images
    size = (sizes.mmseg_img, sizes.mmseg_img)
    root = write_cityscapes_layout(os.path.join(work, 'cityscapes'), dict(train=n_train, val=n_val), size=size,
                                   max_objects=1)
    cfg = tiny_config(CITYSCAPES_CONFIG, root, os.path.join(work, 'run'), image_size=size,
                      max_iters=sizes.mmseg_iters, batch_size=sizes.mmseg_batch, arch=sizes.mmseg_arch)
    cfg.default_hooks.logger.interval = max(1, sizes.mmseg_iters // 10)
    cfg_path = os.path.join(work, 'config.py')
    cfg.dump(cfg_path)
    args = ['-m', 'mmseg_ext.train', cfg_path, '--work-dir', os.path.join(work, 'run')]
    if device.startswith('cuda'):  # AmpOptimWrapper refuses the CPU by design
        args += ['--amp', '--cfg-options', 'optim_wrapper.dtype=bfloat16']
    start = time.time()
    _run_entry(args, os.path.join(work, 'train.log'), device)
    scalars = sorted(glob.glob(os.path.join(work, 'run', '*', 'vis_data', 'scalars.json')))
    if not scalars:
        raise RuntimeError(f'mmseg: no scalars.json under {work}/run')
    losses, miou, memory = [], None, None
    with open(scalars[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec:
                losses.append(float(rec['loss']))
                memory = rec.get('memory', memory)
            if 'mIoU' in rec:
                miou = float(rec['mIoU']) / 100
    chance = majority_class_miou(os.path.join(root, 'gtFine', 'val', '**', '*_labelTrainIds.png'))
    return _training_result(losses, 'val mIoU', miou, chance, seconds=time.time() - start, arch=sizes.mmseg_arch,
                            img_size=sizes.mmseg_img, batch_size=sizes.mmseg_batch, iterations=sizes.mmseg_iters,
                            amp='--amp' in args, peak_memory_mib=memory)


CENTERNET_PUBLISHED_FPS = 52.0  # CenterNet readme/MODEL_ZOO.md: ctdet_coco_dla_2x, 19 ms on a TITAN Xp, no flip test


def step_centernet(device: str, sizes: Sizes, out: str) -> Dict[str, Any]:
    """Frames per second of CenterNet's ctdet detector (network + decode), interleaved configurations."""
    from benchmarks.measure import interleaved
    from dla_plugins import CenterNet
    from dla_plugins.centernet import ctdet_decode
    from dla_plugins.deploy.fuse import optimize_for_inference

    dev = torch.device(device)
    model = CenterNet('dla34').eval().to(dev)
    x = torch.randn(1, 3, sizes.centernet_img, sizes.centernet_img, device=dev)

    def run(m: torch.nn.Module, half: bool = False) -> Callable[[], Any]:
        @torch.no_grad()
        def fn() -> Any:
            with torch.autocast(dev.type, dtype=torch.float16, enabled=half):
                o = m(x)
            return ctdet_decode(o['hm'].float().sigmoid(), o['wh'].float(), o['reg'].float(), K=100)
        return fn

    fused = optimize_for_inference(model)
    fns = {'fp32': run(model), 'fused': run(fused)}
    if device == 'cuda':
        fns['fp16'] = run(model, half=True)
    fns[f'compiled ({sizes.compile_backend})'] = run(torch.compile(fused, backend=sizes.compile_backend))
    times = interleaved(fns, sizes.centernet_rounds, 1 if sizes.smoke else 3, dev, 'centernet', False)
    fps = {k: 1.0 / sorted(v)[len(v) // 2] for k, v in times.items()}
    with open(os.path.join(out, 'centernet.json'), 'w') as f:
        json.dump(dict(fps=fps, img_size=sizes.centernet_img), f, indent=2)
    best = max(fps.values())
    goals = dict(centernet_fps=dict(goal=f'>= {CENTERNET_PUBLISHED_FPS:g} FPS (CenterNet on a TITAN Xp)', value=best,
                                    met=best >= CENTERNET_PUBLISHED_FPS,
                                    note='best configuration, batch 1, network + top-100 decode'))
    return dict(figures=dict(fps=fps, img_size=sizes.centernet_img), checks=dict(ran=bool(fps)), goals=goals)


STEP_FUNCS: Dict[str, Callable[[str, Sizes, str], Dict[str, Any]]] = dict(
    bench=step_bench, dcn=step_dcn, timm=step_timm, d2=step_d2, mmseg=step_mmseg, centernet=step_centernet)


# ---------------------------------------------------------------------------------------------------------- driver
def _run_step(name: str, device: str, sizes: Sizes, out: str, smoke: bool) -> Dict[str, Any]:
    start = time.time()
    try:
        res = STEP_FUNCS[name](device, sizes, out)
    except Exception as e:  # noqa: BLE001 - a failing step is recorded and the next one runs
        res = dict(status='fail', error=f'{type(e).__name__}: {e}', traceback=traceback.format_exc()[-4000:])
    _release_gpu_memory()
    res.setdefault('checks', {})
    if 'status' not in res:
        # smoke: ran and produced its figures; full: every check, learning included
        required = {k: v for k, v in res['checks'].items()
                    if not smoke or k not in ('loss_falls', 'metric_above_chance')}
        res['status'] = 'pass' if all(required.values()) else 'fail'
        failed = [k for k, v in required.items() if not v]
        if failed:
            res['error'] = 'failed checks: ' + ', '.join(failed)
    res.update(step=name, seconds=round(time.time() - start, 1))
    return res


def run_gpu_check(device: str = 'cuda', smoke: bool = False, out: str = 'output/gpu_check',
                  skip: Sequence[str] = (), merge: bool = False, sizes: Optional[Sizes] = None,
                  progress: bool = True) -> Dict[str, Any]:
    """Run every step not in ``skip``; writes ``out/results.json`` (and per-step logs/JSON) and returns it.

    ``merge`` keeps the steps of an earlier ``out/results.json`` (same device) that this run skips, so a check can
    be split over several commands (the lent machine allows 10 minutes per command).
    """
    for s in skip:
        if s not in STEPS:
            raise ValueError(f'skip: unknown step {s!r}; allowed: {list(STEPS)}')
    if device not in ('cuda', 'cpu'):
        raise ValueError(f"device: must be 'cuda' or 'cpu', got {device!r}")
    if device == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('device: cuda requested but torch.cuda.is_available() is False (use --device cpu --smoke '
                           'for the dry run)')
    sizes = sizes or (SMOKE if smoke else FULL)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'results.json')
    earlier: Dict[str, Any] = {}
    if merge and os.path.isfile(path):
        with open(path) as f:
            old = json.load(f)
        if old.get('environment', {}).get('device') == device and old.get('smoke') == smoke:
            earlier = {s['step']: dict(s, from_earlier_run=old['environment'].get('date')) for s in old['steps']}
    result: Dict[str, Any] = dict(environment=environment(device), smoke=smoke, sizes=asdict(sizes), steps=[])
    for name in STEPS:
        if name in skip:
            if name in earlier:
                result['steps'].append(earlier[name])
            continue
        if progress:
            print(f'[gpu-check] {name} ...', flush=True)
        res = _run_step(name, device, sizes, out, smoke)
        if progress:
            print(f"[gpu-check] {name}: {res['status']} ({res['seconds']:.0f}s)"
                  + (f" - {res.get('error') or res.get('note')}" if res['status'] != 'pass' else ''), flush=True)
        result['steps'].append(res)
    with open(path, 'w') as f:
        json.dump(result, f, indent=2, default=str)
    return result


# ----------------------------------------------------------------------------------------------------------- report
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return '-'
    if isinstance(v, bool):
        return 'yes' if v else 'no'
    if isinstance(v, float):
        return f'{v:.{digits}g}' if abs(v) < 1e4 else f'{v:.0f}'
    return str(v)


def _key_figures(step: Dict[str, Any]) -> str:
    f = step.get('figures', {})
    name = step['step']
    if name == 'bench' and f:
        parts = [f"bf16 GEMM {f['gemm_flops']['bf16'] / 1e12:.3g} TFLOP/s"]
        for t in f['throughput']:
            if t['variant'] == f['throughput'][0]['variant']:
                parts.append(f"{t['variant']} {t['mode']}{' compiled' if t['compiled'] else ''} "
                             f"{t['ours_img_s']:.0f} vs {t['timm_img_s']:.0f} img/s ({t['speedup']:.2f}x)")
        return '; '.join(parts)
    if name == 'dcn' and f:
        return 'see dcn.json'
    if name == 'centernet' and f:
        return '; '.join(f'{k} {v:.1f} FPS' for k, v in f['fps'].items()) + f" at {f['img_size']} px"
    if 'loss_first' in f:
        return (f"loss {_fmt(f['loss_first'])} -> {_fmt(f['loss_last'])}, {f['metric']} {_fmt(f['value'])} "
                f"(chance {_fmt(f['chance'])})")
    return ''


def summary_table(result: Dict[str, Any]) -> str:
    """Markdown table: one row per step (status, seconds, key figures, note), then one per recorded goal."""
    lines = ['| step | status | seconds | figures | note |', '|---|---|---|---|---|']
    for s in result['steps']:
        note = (s.get('error') or s.get('note') or '').splitlines()[0][:160] if (s.get('error') or s.get('note')) \
            else ''
        if s.get('from_earlier_run'):
            note = (note + '; ' if note else '') + f"from the run of {s['from_earlier_run']}"
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']:.0f} | {_key_figures(s)} | {note} |")
    goals = [(s['step'], k, g) for s in result['steps'] for k, g in s.get('goals', {}).items()]
    if goals:
        lines += ['', '| step | goal | target | measured | met |', '|---|---|---|---|---|']
        lines += [f"| {s} | {k} | {g['goal']} | {_fmt(g['value'])} | {_fmt(g.get('met'))} |" for s, k, g in goals]
    return '\n'.join(lines)


def docs_section(result: Dict[str, Any]) -> str:
    """The GPU section of ``docs/benchmarks.md`` (between the markers) for a full run's ``result``."""
    e = result['environment']
    head = (f"Run of {e['date']} on {e.get('device_name')} ({e.get('device_memory_gib')} GiB, driver "
            f"{e.get('driver')}, CUDA {e.get('cuda')}, cuDNN {e.get('cudnn')}); Python {e['python']}, torch "
            f"{e['torch']}, torchvision {e['torchvision']}, timm {e['timm']}, detectron2 {e['detectron2']}, mmcv "
            f"{e['mmcv']}, mmengine {e['mmengine']}, mmseg {e['mmseg']}. Command: `python -m benchmarks.gpu_check "
            f"--device cuda` (sizes: `output/gpu_check/results.json`).")
    parts = [head, summary_table(result)]
    bench = next((s for s in result['steps'] if s['step'] == 'bench' and s.get('figures')), None)
    if bench:
        parts.append(bench['figures']['markdown'])
        rows = [f"| {s['impl']}{' + grad checkpointing' if s['grad_checkpointing'] else ''} | {s['max_batch']} | "
                f"{_fmt(s['first_failing'])} | {len(s['probes'])} |" for s in bench['figures']['max_batch']]
        parts.append(f"Largest training batch that fits ({bench['figures']['max_batch'][0]['variant']}, bf16, "
                     'channels_last, ' + f"{result['sizes']['img_size']}²):\n\n| model | max batch | first failing "
                     '| probes |\n|---|---|---|---|\n' + '\n'.join(rows))
    return '\n\n'.join(parts)


def write_docs_section(path: str, text: str) -> None:
    """Replace what lies between :data:`DOCS_BEGIN` and :data:`DOCS_END` in ``path`` with ``text`` (the markers
    stay); without the markers, append them with ``text`` at the end. Nothing else in the file changes."""
    with open(path) as f:
        doc = f.read()
    block = f'{DOCS_BEGIN}\n{text.strip()}\n{DOCS_END}'
    if doc.count(DOCS_BEGIN) > 1 or doc.count(DOCS_END) > 1:
        raise ValueError(f'docs: {path} has more than one gpu-check section marker')
    if DOCS_BEGIN in doc and DOCS_END in doc:
        start, end = doc.index(DOCS_BEGIN), doc.index(DOCS_END) + len(DOCS_END)
        if end < start:
            raise ValueError(f'docs: {path} has the gpu-check end marker before the begin marker')
        doc = doc[:start] + block + doc[end:]
    elif DOCS_BEGIN in doc or DOCS_END in doc:
        raise ValueError(f'docs: {path} has only one of the two gpu-check section markers')
    else:
        doc = doc.rstrip('\n') + '\n\n' + block + '\n'
    with open(path, 'w') as f:
        f.write(doc)


def build_parser() -> argparse.ArgumentParser:
    g = argparse.ArgumentParser(
        prog='python -m benchmarks.gpu_check',
        description='Runs the benchmark (ours vs timm, bf16, channels_last, eager and compiled, GEMM fraction, '
                    'largest batch with gradient checkpointing), the DCN benchmark, and a short training in each host '
                    'on synthetic data; records pass/fail and figures in OUT/results.json, prints a summary table and '
                    '(full CUDA run) writes the GPU section of --docs. Exits 1 if a step fails. --device cpu --smoke: '
                    'the same pipeline at toy sizes (the CI dry run).')
    g.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    g.add_argument('--smoke', action='store_true', help='toy sizes, CPU-safe options (the dry run)')
    g.add_argument('--out', default='output/gpu_check', help='output folder (default output/gpu_check, git-ignored)')
    g.add_argument('--docs', default='docs/benchmarks.md',
                   help="markdown file whose marked GPU section a full CUDA run replaces ('' for none)")
    g.add_argument('--skip', default='', help='comma-separated steps to skip: bench,dcn,timm,d2,mmseg')
    g.add_argument('--merge', action='store_true',
                   help="keep the skipped steps' results of an earlier run in --out (split a check over commands)")
    g.add_argument('--variants', type=variant_list, default=None,
                   help='bench variants (default dla34,dla60x,dla102; smoke dla46_c)')
    g.add_argument('--batch-size', type=int, default=None, help='bench batch (default 256; smoke 2)')
    g.add_argument('--memory-budget-gib', type=float, default=None,
                   help='largest-batch search: a batch fits if its step needs at most this much (default: the '
                        "device's memory)")
    g.add_argument('--no-progress', action='store_true')
    return g


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m benchmarks.gpu_check``."""
    import dataclasses

    args = build_parser().parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    overrides = dict(variants=tuple(args.variants) if args.variants else None, batch_size=args.batch_size,
                     search_budget_mib=args.memory_budget_gib * 1024 if args.memory_budget_gib else None)
    sizes = dataclasses.replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    skip = [s.strip() for s in args.skip.split(',') if s.strip()]
    res = run_gpu_check(args.device, smoke=args.smoke, out=args.out, skip=skip, merge=args.merge, sizes=sizes,
                        progress=not args.no_progress)
    table = summary_table(res)
    with open(os.path.join(args.out, 'summary.md'), 'w') as f:
        f.write(table + '\n')
    print(table)
    if args.docs and not args.smoke and args.device == 'cuda':
        write_docs_section(args.docs, docs_section(res))
        print(f'\nwrote the GPU section of {args.docs}')
    elif args.docs:
        print(f'\n{args.docs} left unchanged (only a full --device cuda run writes its GPU section)')
    print(f"results: {os.path.join(args.out, 'results.json')}")
    return 1 if any(s['status'] == 'fail' for s in res['steps']) else 0


if __name__ == '__main__':
    sys.exit(main())
