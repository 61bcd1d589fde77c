"""Train any registered DLA with timm's own parts: ``python -m timm_ext.train --data-dir DIR --model dla34 ...``.

timm's ``create_dataset`` (ImageFolder layout ``DIR/train/<class>/*``, ``DIR/val/<class>/*``), ``create_loader``
(timm transforms from the model's pretrained cfg), ``create_optimizer_v2``, ``create_scheduler_v2``, timm losses and
``ModelEmaV3``; AMP on CUDA, channels_last, optional ``torch.compile``; DDP when started by ``torchrun``.
Checkpoints are plain ``torch.save`` dicts of tensors and numbers (``last.pth``, ``best.pth``) that reload with
``weights_only=True``, through ``timm.create_model(..., pretrained_cfg_overlay=dict(file=...))`` or
``timm.models.load_checkpoint``. They are written atomically after every epoch by rank 0 (``best.pth`` first, then
``last.pth``) and hold the whole training state: ``--resume auto`` (or a path) continues a killed run. On CPU with
``-j 0`` the resumed run ends bit-identical to an uninterrupted one (with loader workers, the order of samples is
restored but the workers' augmentation RNG restarts from the restored main RNG). A non-finite loss stops the run with
a ``FloatingPointError`` naming the epoch, iteration and value, before the optimizer step and without saving.

``--recipe paper-imagenet | paper-finegrained`` sets every hyper-parameter as the paper's §5.1 / §5.2 (see
:mod:`timm_ext.recipes`; flags given still win), ``--dataset cub|cars|aircraft|food101|nabirds`` reads the official
layouts of Table 4 (:mod:`timm_ext.datasets`), and ``--photometric`` / ``--lighting`` add the paper's colour noise to
timm's transforms (:mod:`timm_ext.transforms`). The effective configuration is saved as ``config.json`` beside the
checkpoints (and printed at the start of a recipe run).

Also: ``--make-synthetic DIR`` writes the 4-class synthetic shapes ImageFolder; ``--demo`` makes one in a temporary
directory, trains dla46_c on it for a few epochs on CPU and prints a one-line ``[timm]`` summary.
"""
import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn as nn
from PIL import Image
from timm.data import create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler, random_seed
from tqdm.auto import tqdm

from dla_plugins import DLA
from dla_plugins.data.synthetic import SHAPE_CLASSES, render_shapes
from dla_plugins.files import non_finite_keys, read_checkpoint, save_atomic
from timm_ext import checkpoint_filter_fn  # importing timm_ext registers the DLA models
from timm_ext.datasets import DATASETS, create_datasets
from timm_ext.recipes import RECIPES, recipe_defaults
from timm_ext.transforms import with_colour_noise

__all__ = ['build_parser', 'parse_args', 'main', 'train', 'make_synthetic_imagefolder', 'demo']


def make_synthetic_imagefolder(root: os.PathLike, num_train: int = 320, num_val: int = 128, image_size: int = 64,
                               seed: int = 0) -> Path:
    """Write the synthetic shapes as an ImageFolder: ``root/{train,val}/{square,disk,triangle,plus}/NNNNN.png``."""
    root = Path(root)
    for split, n, split_seed in (('train', num_train, seed), ('val', num_val, seed + 1)):
        for name in SHAPE_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i, sample in enumerate(render_shapes(n, (image_size, image_size), seed=split_seed)):
            label = SHAPE_CLASSES[int(sample.labels[0])]
            Image.fromarray(sample.image.numpy()).save(root / split / label / f'{i:05d}.png')
    return root


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m timm_ext.train', description=__doc__.split('\n')[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--recipe', default=None, choices=list(RECIPES),
                   help="the paper's hyper-parameters: paper-imagenet (§5.1), paper-finegrained (§5.2); they replace "
                        'the defaults below, flags given still win (docs/timm.md)')
    p.add_argument('--data-dir', help="ImageFolder root holding train/ and val/ (or validation/), or the folder "
                                      "holding --dataset's official layout (or that layout's top folder)")
    p.add_argument('--dataset', default='imagefolder', choices=DATASETS,
                   help='how --data-dir is read: an ImageFolder, or the official layout of CUB-200-2011, Stanford '
                        'Cars, FGVC-Aircraft (variants), Food-101 or NABirds (evaluated on its test split)')
    p.add_argument('--model', default='dla46_c', help='any timm model name; DLA names are ours after import')
    p.add_argument('--pretrained', action=argparse.BooleanOptionalAction, default=False,
                   help="start from the model's pretrained weights (timm hub)")
    p.add_argument('--initial-checkpoint', default=None, help='load these weights first (timm or ucbdrive layout)')
    p.add_argument('--num-classes', type=int, default=None, help='default: number of class folders')
    p.add_argument('--output-stride', type=int, default=32, choices=(8, 16, 32))
    p.add_argument('--img-size', type=int, default=None, help="train/val size; default: the model cfg's")
    p.add_argument('--epochs', type=int, default=10)
    p.add_argument('-b', '--batch-size', type=int, default=32)
    p.add_argument('--opt', default='sgd', help='timm optimizer name (create_optimizer_v2)')
    p.add_argument('--lr', type=float, default=0.05)
    p.add_argument('--momentum', type=float, default=0.9)
    p.add_argument('--weight-decay', type=float, default=1e-4)
    p.add_argument('--wd-bias-norm', action=argparse.BooleanOptionalAction, default=False,
                   help='weight decay on biases and norm weights too (else timm exempts every 1-d parameter)')
    p.add_argument('--sched', default='cosine', help='timm scheduler name (create_scheduler_v2)')
    p.add_argument('--decay-epochs', type=float, default=90, help='step scheduler: epochs between decays')
    p.add_argument('--decay-rate', type=float, default=0.1, help='step scheduler: learning-rate factor per decay')
    p.add_argument('--warmup-epochs', type=int, default=1)
    p.add_argument('--warmup-lr', type=float, default=1e-3)
    p.add_argument('--min-lr', type=float, default=1e-5)
    p.add_argument('--smoothing', type=float, default=0.1, help='label smoothing (0: plain cross-entropy)')
    p.add_argument('--drop', type=float, default=0.0, help='dropout before the classifier')
    p.add_argument('--scale', type=float, nargs=2, default=(0.5, 1.0), help='RandomResizedCrop scale range')
    p.add_argument('--ratio', type=float, nargs=2, default=(3 / 4, 4 / 3), help='RandomResizedCrop aspect ratios')
    p.add_argument('--hflip', type=float, default=0.5, help='horizontal flip probability')
    p.add_argument('--color-jitter', type=float, default=0.4, help="timm's ColorJitter strength (0: off)")
    p.add_argument('--photometric', type=float, default=0.0,
                   help="Howard's brightness, contrast and saturation changes as fb.resnet.torch: factors drawn "
                        'from [1 - v, 1 + v] (0: off)')
    p.add_argument('--lighting', type=float, default=0.0,
                   help='AlexNet PCA lighting noise with the ImageNet eigenvalues/vectors: alphastd (0: off)')
    p.add_argument('--interpolation', default=None, choices=('bilinear', 'bicubic', 'nearest', 'random'),
                   help="resize interpolation; default: the model cfg's")
    p.add_argument('--crop-pct', type=float, default=None,
                   help="evaluation: resize the shorter side to img_size / crop_pct, centre crop; default: the "
                        "model cfg's")
    p.add_argument('--mean', type=float, nargs=3, default=None, help="normalisation mean; default: the model cfg's")
    p.add_argument('--std', type=float, nargs=3, default=None, help="normalisation std; default: the model cfg's")
    p.add_argument('--no-aug', action='store_true', help='no train augmentation (resize + centre crop only)')
    p.add_argument('--model-ema', action='store_true', help='keep an EMA of the weights (ModelEmaV3)')
    p.add_argument('--model-ema-decay', type=float, default=0.998)
    p.add_argument('--amp', action='store_true', help='mixed precision on CUDA (bfloat16 if supported, else fp16)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile the model')
    p.add_argument('--grad-checkpointing', action='store_true')
    p.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm across DDP processes')
    p.add_argument('-j', '--workers', type=int, default=2)
    p.add_argument('--device', default=None, help="default: 'cuda' if available, else 'cpu'")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch decides)')
    p.add_argument('--output', default='output/timm_ext', help='checkpoint directory')
    p.add_argument('--resume', default=None, metavar='PATH|auto',
                   help="continue from a last.pth written by this script (model, EMA, optimizer, scheduler, AMP "
                        "scaler, epoch, RNG states); 'auto': OUTPUT/last.pth if it exists, else start afresh")
    p.add_argument('--no-progress', action='store_true', help='no tqdm bars (one line per epoch only)')
    p.add_argument('--make-synthetic', metavar='DIR', default=None,
                   help='write the synthetic 4-class shapes ImageFolder to DIR and exit')
    p.add_argument('--synthetic-train', type=int, default=320, help='images in the synthetic train split')
    p.add_argument('--synthetic-val', type=int, default=128, help='images in the synthetic val split')
    p.add_argument('--demo', action='store_true', help='synthetic data + short CPU training + [timm] summary line')
    return p


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line parsed by :func:`build_parser` with ``--recipe``'s values (for ``--dataset``) as defaults: a
    recipe sets every hyper-parameter it names, and each flag given on the command line still wins."""
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.recipe:
        parser.set_defaults(**recipe_defaults(known.recipe, known.dataset))
    return parser.parse_args(argv)


def _setup_distributed(device_arg: Optional[str]):
    """(device, rank, world_size); initialises the process group when started by torchrun."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    use_cuda = torch.cuda.is_available() if device_arg is None else device_arg.startswith('cuda')
    if world_size > 1:
        dist.init_process_group(backend='nccl' if use_cuda else 'gloo')
        rank = dist.get_rank()
    else:
        rank = 0
    if use_cuda:
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device(device_arg or 'cpu')
    return device, rank, world_size


def _evaluate(model: nn.Module, loader, device: torch.device, channels_last: bool, amp_ctx, world_size: int) -> float:
    model.eval()
    correct = torch.zeros((), device=device)
    total = torch.zeros((), device=device)
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp_ctx():
                logits = model(x)
            correct += (logits.argmax(1) == y).sum()
            total += y.numel()
    if world_size > 1:
        dist.all_reduce(correct)
        dist.all_reduce(total)
    return (correct / total.clamp(min=1)).item()


_TRAIN_STATE_KEYS = ('optimizer', 'scheduler', 'updates', 'best_accuracy', 'history', 'rng_states')


def _rng_state(sampler: Any) -> Dict[str, Any]:
    """This process's RNG states (torch, CUDA, numpy, python, the sampler's own generator), weights_only-loadable."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), numpy=(name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss), python=random.getstate())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    generator = getattr(sampler, 'generator', None)
    if isinstance(generator, torch.Generator):
        state['sampler'] = generator.get_state()
    return state


def _set_rng_state(state: Dict[str, Any], sampler: Any) -> None:
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    if 'sampler' in state:
        sampler.generator.set_state(state['sampler'])


def _checkpoint(model: nn.Module, ema: Optional[ModelEmaV3], arch: str, epoch: int, accuracy: float,
                **train_state: Any) -> Dict[str, Any]:
    """Tensors, plain numbers and containers only, so ``torch.load(weights_only=True)`` reads it."""
    ckpt: Dict[str, Any] = dict(arch=arch, epoch=epoch, val_accuracy=accuracy, state_dict=model.state_dict())
    if ema is not None:
        ckpt['state_dict_ema'] = ema.module.state_dict()
    ckpt.update(train_state)
    return ckpt


def _resume_path(resume: str, out_dir: Path) -> Optional[Path]:
    if resume != 'auto':
        if not os.path.isfile(resume):
            raise FileNotFoundError(f"resume: no such file {resume!r} (a last.pth written by timm_ext.train, or "
                                    f"'auto')")
        return Path(resume)
    last = out_dir / 'last.pth'
    return last if last.is_file() else None


def _read_train_state(path: Path, arch: str, has_ema: bool, has_scaler: bool) -> Dict[str, Any]:
    """The checkpoint at ``path``, checked to hold a whole training state of ``arch``."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or 'state_dict' not in ckpt:
        raise ValueError(f'resume: {str(path)!r} is not a timm_ext.train checkpoint (no state_dict)')
    missing = [k for k in _TRAIN_STATE_KEYS if k not in ckpt]
    if missing:
        raise ValueError(f'resume: {str(path)!r} holds weights but no training state (missing {missing}); pass it as '
                         f'--initial-checkpoint to start a new run from these weights')
    if ckpt.get('arch') != arch:
        raise ValueError(f"resume: {str(path)!r} was trained as --model {ckpt.get('arch')!r}, not {arch!r}")
    if has_ema != ('state_dict_ema' in ckpt):
        raise ValueError(f"resume: {str(path)!r} was trained {'with' if 'state_dict_ema' in ckpt else 'without'} "
                         f"--model-ema; pass the same flag")
    if has_scaler != ('scaler' in ckpt):
        raise ValueError(f"resume: {str(path)!r} was trained {'with' if 'scaler' in ckpt else 'without'} an fp16 AMP "
                         f"scaler (--amp on CUDA without bfloat16); resume on the same kind of device")
    return ckpt


def _check_finite(loss: float, epoch: int, it: int, iters: int, updates: int, world_size: int, out_dir: Path) -> None:
    """Raise ``FloatingPointError`` when the loss of any rank is not finite (before the optimizer step)."""
    bad = not math.isfinite(loss)
    if world_size > 1:  # every rank stops together (else the others wait in the next all-reduce)
        flag = torch.tensor([float(bad)], device='cuda' if dist.get_backend() == 'nccl' else 'cpu')
        dist.all_reduce(flag)
        if flag.item() and not bad:
            raise FloatingPointError(f'loss is not finite on another rank at epoch {epoch + 1}, iteration '
                                     f'{it + 1}/{iters} (update {updates + 1}); stopped, nothing saved')
    if bad:
        last = out_dir / 'last.pth'
        kept = f'{last} is kept' if last.is_file() else 'no checkpoint was written'
        raise FloatingPointError(f'loss is {loss} at epoch {epoch + 1}, iteration {it + 1}/{iters} (update '
                                 f'{updates + 1}); stopped before the optimizer step, nothing saved: {kept}')


def effective_config(args: argparse.Namespace, data_cfg: Dict[str, Any], **derived: Any) -> Dict[str, Any]:
    """Every flag's effective value (the model cfg's resolved input size, crop, interpolation, mean and std in place
    of the ``None`` defaults) plus ``derived`` facts of the run, JSON-ready."""
    skip = ('make_synthetic', 'synthetic_train', 'synthetic_val', 'demo')
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(vars(args).items()) if k not in skip}
    config.update(img_size=data_cfg['input_size'][-1], crop_pct=data_cfg['crop_pct'],
                  interpolation=data_cfg['interpolation'], mean=list(data_cfg['mean']), std=list(data_cfg['std']))
    config.update(derived)
    if 'world_size' in derived:
        config['global_batch_size'] = args.batch_size * derived['world_size']
    return config


def format_config(config: Dict[str, Any]) -> str:
    """The printed form of :func:`effective_config`: a header line, then ``  name = value`` lines."""
    head = f"effective configuration (recipe {config.get('recipe')}, dataset {config.get('dataset')}):"
    return '\n'.join([head] + [f'  {k} = {v}' for k, v in config.items()])


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the training described by ``args`` (see :func:`build_parser`); returns the final metrics."""
    if not args.data_dir:
        raise ValueError('data_dir: required (an ImageFolder root with train/ and val/), or use --make-synthetic')
    if args.threads:
        torch.set_num_threads(args.threads)
    device, rank, world_size = _setup_distributed(args.device)
    random_seed(args.seed, rank)  # torch, numpy and python (augmentations draw from python's random)
    ds_train, ds_val, found_classes = create_datasets(args.dataset, args.data_dir)
    num_classes = args.num_classes or found_classes

    stride = dict(output_stride=args.output_stride) if args.output_stride != 32 else {}  # non-DLA models too
    model = timm.create_model(args.model, pretrained=args.pretrained, num_classes=num_classes, drop_rate=args.drop,
                              **stride)
    if args.initial_checkpoint:  # strict; a ucbdrive-layout DLA checkpoint is converted by rule
        filter_fn = checkpoint_filter_fn if isinstance(model, DLA) else None
        timm.models.load_checkpoint(model, args.initial_checkpoint, strict=True, filter_fn=filter_fn)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()
    if args.sync_bn and world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    overrides = dict(img_size=args.img_size, crop_pct=args.crop_pct, interpolation=args.interpolation,
                     mean=args.mean, std=args.std)
    data_cfg = resolve_data_config({k: v for k, v in overrides.items() if v is not None}, model=model)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    base_model = model

    use_amp = args.amp and device.type == 'cuda'
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = NativeScaler() if use_amp and amp_dtype == torch.float16 else None

    def amp_ctx():
        return torch.autocast('cuda', dtype=amp_dtype) if use_amp else nullcontext()

    loader_args = dict(input_size=data_cfg['input_size'], batch_size=args.batch_size, interpolation=data_cfg[
        'interpolation'], mean=data_cfg['mean'], std=data_cfg['std'], num_workers=args.workers,
        distributed=world_size > 1, use_prefetcher=False, persistent_workers=args.workers > 0, device=device)
    loader_train = create_loader(ds_train, is_training=True, no_aug=args.no_aug, scale=tuple(args.scale),
                                 ratio=tuple(args.ratio), hflip=args.hflip, color_jitter=args.color_jitter or None,
                                 **loader_args)
    if not args.no_aug and (args.photometric or args.lighting):  # the paper's colour noise, before Normalize
        ds_train.transform = with_colour_noise(ds_train.transform, args.photometric, args.lighting)
    loader_val = create_loader(ds_val, is_training=False, crop_pct=data_cfg['crop_pct'], **loader_args)

    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum, filter_bias_and_bn=not args.wd_bias_norm)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, decay_epochs=args.decay_epochs, decay_rate=args.decay_rate,
        step_on_epochs=False, updates_per_epoch=len(loader_train))
    criterion = LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing > 0 else nn.CrossEntropyLoss()
    ema = ModelEmaV3(base_model, decay=args.model_ema_decay) if args.model_ema else None

    out_dir = Path(args.output)
    config = effective_config(args, data_cfg, num_classes=num_classes, world_size=world_size,
                              train_images=len(ds_train), eval_images=len(ds_val), updates_per_epoch=len(loader_train),
                              train_transform=[repr(t) for t in getattr(ds_train.transform, 'transforms', [])])
    if rank == 0 and args.recipe:
        print(format_config(config), flush=True)
    best, acc, acc_ema, updates, start_epoch = -1.0, 0.0, None, 0, 0
    history: List[Dict[str, float]] = []
    resume_from = _resume_path(args.resume, out_dir) if args.resume else None
    if resume_from is not None:  # every rank reads the same file (rank 0 wrote it)
        ckpt = _read_train_state(resume_from, args.model, ema is not None, scaler is not None)
        base_model.load_state_dict(ckpt['state_dict'], strict=True)
        if ema is not None:
            ema.module.load_state_dict(ckpt['state_dict_ema'], strict=True)
        optimizer.load_state_dict(ckpt['optimizer'])
        scheduler.load_state_dict(ckpt['scheduler'])
        if scaler is not None:
            scaler.load_state_dict(ckpt['scaler'])
        start_epoch, updates, best, history = ckpt['epoch'], ckpt['updates'], ckpt['best_accuracy'], ckpt['history']
        acc, acc_ema = ckpt['val_accuracy'], ckpt.get('val_accuracy_ema')
        rng_states = ckpt['rng_states']
        if len(rng_states) == world_size:
            _set_rng_state(rng_states[rank], loader_train.sampler)
        elif rank == 0:  # another world size splits the data differently anyway: the run continues, reseeded
            print(f'resume: {resume_from} was written by {len(rng_states)} process(es), this run has {world_size}; '
                  f'RNG states are not restored (the run continues, but not bit-identically)', flush=True)
        if rank == 0:
            print(f'resumed from {resume_from} at epoch {start_epoch}/{num_epochs} (update {updates})', flush=True)

    if args.compile:
        model = torch.compile(model)
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda'
                                                    else None)

    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    show = rank == 0 and not args.no_progress
    start = time.time()
    for epoch in range(start_epoch, num_epochs):
        if world_size > 1 and hasattr(loader_train.sampler, 'set_epoch'):
            loader_train.sampler.set_epoch(epoch)
        model.train()
        loss_sum, seen = 0.0, 0
        bar = tqdm(loader_train, desc=f'{args.model} epoch {epoch + 1}/{num_epochs}', disable=not show, leave=False)
        epoch_lr = optimizer.param_groups[0]['lr']  # the learning rate this epoch starts with
        for it, (x, y) in enumerate(bar):
            x, y = x.to(device), y.to(device)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp_ctx():
                loss = criterion(model(x), y)
            loss_value = loss.item()
            _check_finite(loss_value, epoch, it, len(loader_train), updates, world_size, out_dir)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler(loss, optimizer, parameters=model.parameters())
            else:
                loss.backward()
                optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            if ema is not None:
                ema.update(base_model, step=updates)
            loss_sum += loss_value * y.shape[0]
            seen += y.shape[0]
            bar.set_postfix(loss=f'{loss_sum / seen:.3f}', lr=f"{optimizer.param_groups[0]['lr']:.4f}")
        scheduler.step(epoch + 1)
        acc = _evaluate(model, loader_val, device, args.channels_last, amp_ctx, world_size)
        if ema is not None:
            acc_ema = _evaluate(ema.module, loader_val, device, args.channels_last, amp_ctx, world_size)
        history.append(dict(epoch=epoch + 1, train_loss=loss_sum / max(seen, 1), val_accuracy=acc, lr=epoch_lr))
        is_best, best = acc > best, max(acc, best)
        bad = non_finite_keys(base_model.state_dict()) + (non_finite_keys(ema.module.state_dict()) if ema else [])
        if bad:  # e.g. BatchNorm statistics; every rank holds the same weights, so every rank stops here
            raise FloatingPointError(f'epoch {epoch + 1}: non-finite weights ({len(bad)} tensors, first {bad[0]!r}); '
                                     f'stopped without saving, the previous checkpoint in {out_dir} is kept')
        rng_states = [_rng_state(loader_train.sampler)]  # the state the next epoch starts from, one per rank
        if world_size > 1:
            rng_states = [None] * world_size
            dist.all_gather_object(rng_states, _rng_state(loader_train.sampler))
        if rank == 0:
            ema_txt = f' | ema val acc {acc_ema:.3f}' if acc_ema is not None else ''
            print(f'[{args.model}] epoch {epoch + 1}/{num_epochs} | train loss {loss_sum / max(seen, 1):.4f} | '
                  f'val acc {acc:.3f}{ema_txt} | {time.time() - start:.0f}s', flush=True)
            extra = dict(scaler=scaler.state_dict()) if scaler is not None else {}
            if acc_ema is not None:
                extra['val_accuracy_ema'] = acc_ema
            ckpt = _checkpoint(base_model, ema, args.model, epoch + 1, acc, optimizer=optimizer.state_dict(),
                               scheduler=scheduler.state_dict(), updates=updates, best_accuracy=best,
                               history=history, rng_states=rng_states, **extra)
            save_atomic(json.dumps(config, indent=2).encode() + b'\n', out_dir / 'config.json')
            if is_best:  # best first: a kill before last.pth is written re-runs this epoch and rewrites both
                save_atomic(ckpt, out_dir / 'best.pth')
            save_atomic(ckpt, out_dir / 'last.pth')
    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return dict(model=args.model, val_accuracy=acc, best_accuracy=best, ema_val_accuracy=acc_ema, epochs=num_epochs,
                num_classes=num_classes, seconds=time.time() - start, checkpoint=str(out_dir / 'last.pth'),
                history=history, rank=rank)


def demo(epochs: int = 4, model: str = 'dla46_c', progress: bool = True) -> Dict[str, Any]:
    """``make demo``'s timm part: synthetic shapes, a short CPU training, a strict checkpoint reload, one summary."""
    with tempfile.TemporaryDirectory(prefix='timm_ext_demo_') as tmp:
        data = make_synthetic_imagefolder(Path(tmp) / 'shapes')
        argv = ['--data-dir', str(data), '--model', model, '--epochs', str(epochs), '--img-size', '64',
                '--workers', '0', '--device', 'cpu', '--output', str(Path(tmp) / 'out')]
        res = train(build_parser().parse_args(argv + ([] if progress else ['--no-progress'])))
        # the overlay's num_classes tells timm the checkpoint's head size (else it drops a head != 1000 classes)
        overlay = dict(file=res['checkpoint'], num_classes=res['num_classes'])
        reloaded = timm.create_model(model, pretrained=True, pretrained_cfg_overlay=overlay,
                                     num_classes=res['num_classes']).state_dict()
        saved = torch.load(res['checkpoint'], map_location='cpu', weights_only=True)['state_dict']
        ok = reloaded.keys() == saved.keys() and all(torch.equal(reloaded[k], saved[k]) for k in saved)
    print(f"[timm] {model} via timm.create_model + timm data/optim/sched: {res['epochs']} epochs, "
          f"final val accuracy {res['val_accuracy']:.3f} (chance {1 / len(SHAPE_CLASSES):.2f}), "
          f"{res['seconds']:.0f}s, checkpoint reloaded {'strictly' if ok else 'WITH DIFFERENCES'}", flush=True)
    return res


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.demo:
        demo(progress=not args.no_progress)
        return 0
    if args.make_synthetic:
        root = make_synthetic_imagefolder(args.make_synthetic, args.synthetic_train, args.synthetic_val,
                                          args.img_size or 64, args.seed)
        print(f'wrote the synthetic shapes ImageFolder ({", ".join(SHAPE_CLASSES)}) to {root}')
        return 0
    res = train(args)
    if res['rank'] == 0:
        print(f"[timm] {res['model']}: final val accuracy {res['val_accuracy']:.3f}, best {res['best_accuracy']:.3f}, "
              f"{res['seconds']:.0f}s; checkpoint {res['checkpoint']}", flush=True)
    return 0 if math.isfinite(res['val_accuracy']) else 1


if __name__ == '__main__':
    sys.exit(main())
