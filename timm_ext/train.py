"""Train any registered DLA with timm's own parts: ``python -m timm_ext.train --data-dir DIR --model dla34 ...``.

timm's ``create_dataset`` (ImageFolder layout ``DIR/train/<class>/*``, ``DIR/val/<class>/*``), ``create_loader``
(timm transforms from the model's pretrained cfg), ``create_optimizer_v2``, ``create_scheduler_v2``, timm losses and
``ModelEmaV3``; AMP on CUDA, channels_last, optional ``torch.compile``; DDP when started by ``torchrun``.
Checkpoints are plain ``torch.save`` dicts of tensors and numbers (``last.pth``, ``best.pth``) that reload with
``weights_only=True``, through ``timm.create_model(..., pretrained_cfg_overlay=dict(file=...))`` or
``timm.models.load_checkpoint``. They are written atomically after every epoch by rank 0 (``best.pth`` first, then
``last.pth``) and hold the whole training state: ``--resume auto`` (or a path) continues a killed run. On CPU with
``-j 0`` the resumed run ends bit-identical to an uninterrupted one (with loader workers, the order of samples is
restored but the workers' augmentation RNG restarts from the restored main RNG). No step waits for the device: the
host reads the losses every ``--log-interval`` iterations and at each epoch's first and last, and a non-finite loss
stops the run there with a ``FloatingPointError`` naming the epoch, iteration and value of the first one, without
saving (before the optimizer step when it is the iteration read).

The pieces, as in timm's ``train.py``: :func:`setup_run`, :func:`build_model`, :func:`build_loaders`,
:func:`build_optimizer`, :func:`resume`, :func:`train_one_epoch`, :func:`validate`, :func:`save_checkpoint`;
:func:`train` runs them. On the command line, bad input is one line ``error: ...`` on stderr and exit code 2.

``--recipe paper-imagenet | paper-finegrained`` sets every hyper-parameter as the paper's §5.1 / §5.2 (see
:mod:`timm_ext.recipes`; flags given still win), ``--dataset cub|cars|aircraft|food101|nabirds`` reads the official
layouts of Table 4 (:mod:`timm_ext.datasets`), and ``--photometric`` / ``--lighting`` add the paper's colour noise to
timm's transforms (:mod:`timm_ext.transforms`). The effective configuration is saved as ``config.json`` beside the
checkpoints (and printed at the start of a recipe run).

Also: ``--make-synthetic DIR`` writes the 4-class synthetic shapes ImageFolder; ``--demo`` makes one in a temporary
directory, trains dla46_c on it for a few epochs on CPU and prints a one-line ``[timm]`` summary.
"""
import argparse
import difflib
import json
import math
import os
import random
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Dict, List, Optional, Sequence, Tuple

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn as nn
from PIL import Image
from timm.data import create_loader, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy
from timm.models import get_arch_name, is_model_pretrained, parse_model_name
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler, random_seed
from tqdm.auto import tqdm

from dla_plugins import DLA
from dla_plugins.data.synthetic import SHAPE_CLASSES, render_shapes
from dla_plugins.files import non_finite_keys, read_checkpoint, save_atomic
from dla_plugins.tools.errors import one_line_errors, run_cli
from timm_ext import checkpoint_filter_fn  # importing timm_ext registers the DLA models
from timm_ext.datasets import DATASETS, create_datasets
from timm_ext.recipes import RECIPES, recipe_defaults
from timm_ext.transforms import with_colour_noise

PROG = 'python -m timm_ext.train'
__all__ = ['build_parser', 'parse_args', 'main', 'train', 'make_synthetic_imagefolder', 'demo', 'Run', 'Parts',
           'TrainState', 'LossMeter', 'check_model_name', 'setup_run', 'build_model', 'build_loaders',
           'build_optimizer', 'resume', 'train_one_epoch', 'validate', 'save_checkpoint']


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
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n')[0],
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
    p.add_argument('--log-interval', type=int, default=50,
                   help='read the loss from the device (progress bar, non-finite check) every N iterations, and at '
                        "each epoch's first and last; no step waits for the device in between")
    p.add_argument('--make-synthetic', metavar='DIR', default=None,
                   help='write the synthetic 4-class shapes ImageFolder to DIR and exit')
    p.add_argument('--synthetic-train', type=int, default=320, help='images in the synthetic train split')
    p.add_argument('--synthetic-val', type=int, default=128, help='images in the synthetic val split')
    p.add_argument('--demo', action='store_true', help='synthetic data + short CPU training + [timm] summary line')
    return one_line_errors(p)


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


@dataclass
class Run:
    """Where and how the run executes: device, DDP rank and world size, autocast, how often the host reads the
    losses (``log_interval``), progress bars, the checkpoint directory."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: Optional[torch.dtype] = None  # autocast dtype (CUDA only); None: full precision
    channels_last: bool = False
    log_interval: int = 50
    progress: bool = False
    out_dir: Path = Path('output/timm_ext')

    def autocast(self) -> ContextManager:
        return torch.autocast('cuda', dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` on the device (copies queued, not waited for), ``x`` channels-last if asked."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        return (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), y


def setup_run(args: argparse.Namespace) -> Run:
    """The :class:`Run` of ``args``; initialises the process group when started by torchrun."""
    if args.log_interval < 1:
        raise ValueError(f'log_interval: must be >= 1, got {args.log_interval}')
    if args.threads:
        torch.set_num_threads(args.threads)
    device, rank, world_size = _setup_distributed(args.device)
    amp_dtype = None
    if args.amp and device.type == 'cuda':
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return Run(device, rank, world_size, amp_dtype, args.channels_last, args.log_interval,
               progress=rank == 0 and not args.no_progress, out_dir=Path(args.output))


@dataclass
class Parts:
    """What training updates: ``model`` as it runs forward (compiled and/or DDP-wrapped once :func:`train` wraps it),
    ``base_model`` (the plain module: saved, EMA source), optimizer, scheduler, loss, EMA, fp16 AMP scaler."""

    model: nn.Module
    base_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    criterion: nn.Module
    ema: Optional[ModelEmaV3] = None
    scaler: Optional[NativeScaler] = None


@dataclass
class TrainState:
    """Progress carried from epoch to epoch, saved in ``last.pth`` and restored by ``--resume``."""

    epoch: int = 0  # epochs done
    updates: int = 0
    best: float = -1.0
    acc: float = 0.0
    acc_ema: Optional[float] = None
    history: List[Dict[str, float]] = field(default_factory=list)


def check_model_name(model: str, pretrained: bool = False) -> None:
    """Raise a ValueError naming ``--model`` when timm has no such model, or ``--pretrained`` when it has no weights
    for it (names with a source prefix, ``hf-hub:`` or ``local-dir:``, are left to timm)."""
    source, name = parse_model_name(model)
    if source is not None:
        return
    if not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ''
        raise ValueError(f'model: unknown {model!r}; allowed: a name of timm.list_models() ({len(names)} names){hint}')
    if pretrained and not is_model_pretrained(get_arch_name(name)):
        raise ValueError(f'pretrained: timm has no pretrained weights for {model!r}; pass --no-pretrained, or '
                         f'--initial-checkpoint FILE')


def build_model(args: argparse.Namespace, num_classes: int, run: Run) -> nn.Module:
    """``timm.create_model(args.model)`` with the initial checkpoint, grad checkpointing and SyncBN, on the device."""
    stride = dict(output_stride=args.output_stride) if args.output_stride != 32 else {}  # non-DLA models too
    model = timm.create_model(args.model, pretrained=args.pretrained, num_classes=num_classes, drop_rate=args.drop,
                              **stride)
    if args.initial_checkpoint:  # strict; a ucbdrive-layout DLA checkpoint is converted by rule
        filter_fn = checkpoint_filter_fn if isinstance(model, DLA) else None
        timm.models.load_checkpoint(model, args.initial_checkpoint, strict=True, filter_fn=filter_fn)
    if args.grad_checkpointing:
        model.set_grad_checkpointing()
    if args.sync_bn and run.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    return model.to(device=run.device, memory_format=memory_format)


def build_loaders(args: argparse.Namespace, model: nn.Module, ds_train: Any, ds_val: Any, run: Run
                  ) -> Tuple[Any, Any, Dict[str, Any]]:
    """timm train and eval loaders with the transforms of the model's cfg (flags override); returns them and the
    resolved data config."""
    overrides = dict(img_size=args.img_size, crop_pct=args.crop_pct, interpolation=args.interpolation,
                     mean=args.mean, std=args.std)
    data_cfg = resolve_data_config({k: v for k, v in overrides.items() if v is not None}, model=model)
    loader_args = dict(input_size=data_cfg['input_size'], batch_size=args.batch_size, interpolation=data_cfg[
        'interpolation'], mean=data_cfg['mean'], std=data_cfg['std'], num_workers=args.workers,
        distributed=run.world_size > 1, use_prefetcher=False, persistent_workers=args.workers > 0,
        pin_memory=run.device.type == 'cuda', device=run.device)
    loader_train = create_loader(ds_train, is_training=True, no_aug=args.no_aug, scale=tuple(args.scale),
                                 ratio=tuple(args.ratio), hflip=args.hflip, color_jitter=args.color_jitter or None,
                                 **loader_args)
    if not args.no_aug and (args.photometric or args.lighting):  # the paper's colour noise, before Normalize
        ds_train.transform = with_colour_noise(ds_train.transform, args.photometric, args.lighting)
    loader_val = create_loader(ds_val, is_training=False, crop_pct=data_cfg['crop_pct'], **loader_args)
    return loader_train, loader_val, data_cfg


def build_optimizer(args: argparse.Namespace, model: nn.Module, updates_per_epoch: int) -> Tuple[Any, Any, int]:
    """timm's optimizer and per-update scheduler; returns ``(optimizer, scheduler, num_epochs)``."""
    optimizer = create_optimizer_v2(model, opt=args.opt, lr=args.lr, weight_decay=args.weight_decay,
                                    momentum=args.momentum, filter_bias_and_bn=not args.wd_bias_norm)
    scheduler, num_epochs = create_scheduler_v2(
        optimizer, sched=args.sched, num_epochs=args.epochs, warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr, min_lr=args.min_lr, decay_epochs=args.decay_epochs, decay_rate=args.decay_rate,
        step_on_epochs=False, updates_per_epoch=updates_per_epoch)
    return optimizer, scheduler, num_epochs


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


def resume(path: Path, arch: str, parts: Parts, sampler: Any, run: Run) -> TrainState:
    """Restore model, EMA, optimizer, scheduler, scaler and this rank's RNG states from ``path`` (every rank reads
    the file rank 0 wrote); returns the progress it holds."""
    ckpt = _read_train_state(path, arch, parts.ema is not None, parts.scaler is not None)
    parts.base_model.load_state_dict(ckpt['state_dict'], strict=True)
    if parts.ema is not None:
        parts.ema.module.load_state_dict(ckpt['state_dict_ema'], strict=True)
    parts.optimizer.load_state_dict(ckpt['optimizer'])
    parts.scheduler.load_state_dict(ckpt['scheduler'])
    if parts.scaler is not None:
        parts.scaler.load_state_dict(ckpt['scaler'])
    rng_states = ckpt['rng_states']
    if len(rng_states) == run.world_size:
        _set_rng_state(rng_states[run.rank], sampler)
    elif run.rank == 0:  # another world size splits the data differently anyway: the run continues, reseeded
        print(f'resume: {path} was written by {len(rng_states)} process(es), this run has {run.world_size}; '
              f'RNG states are not restored (the run continues, but not bit-identically)', flush=True)
    return TrainState(epoch=ckpt['epoch'], updates=ckpt['updates'], best=ckpt['best_accuracy'],
                      acc=ckpt['val_accuracy'], acc_ema=ckpt.get('val_accuracy_ema'), history=ckpt['history'])


class LossMeter:
    """An epoch's training losses, kept on the device. The host reads them only in :meth:`sync` (one transfer, plus
    one all-reduce under DDP), which :func:`train_one_epoch` calls on the first iteration, every ``log_interval``
    iterations and on the last, each time before that iteration's optimizer step."""

    def __init__(self, epoch: int, iters: int, updates: int, run: Run) -> None:
        self.epoch, self.iters, self.updates, self.run = epoch, iters, updates, run  # updates: before this epoch
        self.pending: List[torch.Tensor] = []
        self.sizes: List[int] = []
        self.start = 0  # the iteration of pending[0]
        self.total, self.seen = 0.0, 0

    def add(self, loss: torch.Tensor, batch_size: int) -> None:
        self.pending.append(loss.detach())
        self.sizes.append(batch_size)

    @property
    def mean(self) -> float:
        """The mean loss per image of the iterations read so far."""
        return self.total / max(self.seen, 1)

    def sync(self, it: int) -> None:
        """Read the losses of the iterations since the last sync, up to ``it``; a non-finite one on any rank raises
        ``FloatingPointError`` naming the first (its epoch, iteration and update)."""
        values = torch.stack(self.pending).tolist() if self.pending else []
        bad = next((self.start + i for i, v in enumerate(values) if not math.isfinite(v)), None)
        first = bad
        if self.run.world_size > 1:  # every rank stops together (else the others wait in the next all-reduce)
            flag = torch.tensor([self.iters if bad is None else bad],
                                device='cuda' if dist.get_backend() == 'nccl' else 'cpu')
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            first = int(flag.item())
            first = first if first < self.iters else None
        if first is not None:
            raise FloatingPointError(self._message(first, values[first - self.start] if first == bad else None, it))
        for value, n in zip(values, self.sizes):
            self.total += value * n
            self.seen += n
        self.start, self.pending, self.sizes = it + 1, [], []

    def _message(self, first: int, value: Optional[float], it: int) -> str:
        where = f'at epoch {self.epoch + 1}, iteration {first + 1}/{self.iters} (update {self.updates + first + 1})'
        late = '' if first == it else (f', found at iteration {it + 1}/{self.iters} (the host reads the loss every '
                                       f"--log-interval {self.run.log_interval} iterations and at the epoch's last)")
        if value is None:
            return f'loss is not finite on another rank {where}{late}; stopped, nothing saved'
        last = self.run.out_dir / 'last.pth'
        kept = f'{last} is kept' if last.is_file() else 'no checkpoint was written'
        return (f'loss is {value} {where}{late}; stopped{" before the optimizer step" if first == it else ""}, '
                f'nothing saved: {kept}')


def train_one_epoch(parts: Parts, loader: Any, run: Run, state: TrainState, epoch: int, desc: str = '') -> float:
    """One pass over ``loader`` (``state.updates`` advances per step); returns the epoch's mean training loss.

    No step waits for the device: the losses are read by :class:`LossMeter` at its sync points only (the last of them
    is the iteration ``len(loader) - 1``), so a non-finite loss is reported there: at the latest on the epoch's last
    iteration, always before anything is saved."""
    parts.model.train()
    iters = len(loader)
    meter = LossMeter(epoch, iters, state.updates, run)
    bar = tqdm(loader, desc=desc, disable=not run.progress, leave=False)
    for it, (x, y) in enumerate(bar):
        x, y = run.batch(x, y)
        with run.autocast():
            loss = parts.criterion(parts.model(x), y)
        meter.add(loss, y.shape[0])
        if it % run.log_interval == 0 or it == iters - 1:
            meter.sync(it)
            bar.set_postfix(loss=f'{meter.mean:.3f}', lr=f"{parts.optimizer.param_groups[0]['lr']:.4f}")
        parts.optimizer.zero_grad(set_to_none=True)
        if parts.scaler is not None:
            parts.scaler(loss, parts.optimizer, parameters=parts.model.parameters())
        else:
            loss.backward()
            parts.optimizer.step()
        state.updates += 1
        parts.scheduler.step_update(num_updates=state.updates)
        if parts.ema is not None:
            parts.ema.update(parts.base_model, step=state.updates)
    return meter.mean


def validate(model: nn.Module, loader: Any, run: Run) -> float:
    """Top-1 accuracy over ``loader`` (summed over DDP ranks); one host read at the end."""
    model.eval()
    correct = torch.zeros((), device=run.device)
    total = torch.zeros((), device=run.device)
    with torch.no_grad():
        for x, y in loader:
            x, y = run.batch(x, y)
            with run.autocast():
                logits = model(x)
            correct += (logits.argmax(1) == y).sum()
            total += y.numel()
    if run.world_size > 1:
        dist.all_reduce(correct)
        dist.all_reduce(total)
    return (correct / total.clamp(min=1)).item()


def _check_weights(parts: Parts, epoch: int, out_dir: Path) -> None:
    bad = non_finite_keys(parts.base_model.state_dict())
    if parts.ema is not None:
        bad += non_finite_keys(parts.ema.module.state_dict())
    if bad:  # e.g. BatchNorm statistics; every rank holds the same weights, so every rank stops here
        raise FloatingPointError(f'epoch {epoch + 1}: non-finite weights ({len(bad)} tensors, first {bad[0]!r}); '
                                 f'stopped without saving, the previous checkpoint in {out_dir} is kept')


def _gather_rng_states(sampler: Any, run: Run) -> List[Dict[str, Any]]:
    """The RNG states the next epoch starts from, one per rank (a collective under DDP)."""
    if run.world_size == 1:
        return [_rng_state(sampler)]
    rng_states: List[Any] = [None] * run.world_size
    dist.all_gather_object(rng_states, _rng_state(sampler))
    return rng_states


def save_checkpoint(parts: Parts, state: TrainState, arch: str, rng_states: List[Dict[str, Any]],
                    config: Dict[str, Any], is_best: bool, out_dir: Path) -> None:
    """Write ``config.json``, then ``best.pth`` (if best) and ``last.pth``, each atomically (rank 0 only)."""
    extra = dict(scaler=parts.scaler.state_dict()) if parts.scaler is not None else {}
    if state.acc_ema is not None:
        extra['val_accuracy_ema'] = state.acc_ema
    ckpt = _checkpoint(parts.base_model, parts.ema, arch, state.epoch, state.acc,
                       optimizer=parts.optimizer.state_dict(), scheduler=parts.scheduler.state_dict(),
                       updates=state.updates, best_accuracy=state.best, history=state.history, rng_states=rng_states,
                       **extra)
    save_atomic(json.dumps(config, indent=2).encode() + b'\n', out_dir / 'config.json')
    if is_best:  # best first: a kill before last.pth is written re-runs this epoch and rewrites both
        save_atomic(ckpt, out_dir / 'best.pth')
    save_atomic(ckpt, out_dir / 'last.pth')


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


def _wrap(model: nn.Module, args: argparse.Namespace, run: Run) -> nn.Module:
    if args.compile:
        model = torch.compile(model)
    if run.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[run.device.index] if run.device.type == 'cuda'
                                                    else None)
    return model


def train(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the training described by ``args`` (see :func:`build_parser`); returns the final metrics."""
    if not args.data_dir:
        raise ValueError('data_dir: required (an ImageFolder root with train/ and val/), or use --make-synthetic')
    check_model_name(args.model, args.pretrained)  # before reading any data
    run = setup_run(args)
    resume_from = _resume_path(args.resume, run.out_dir) if args.resume else None
    random_seed(args.seed, run.rank)  # torch, numpy and python (augmentations draw from python's random)
    ds_train, ds_val, found_classes = create_datasets(args.dataset, args.data_dir)
    num_classes = args.num_classes or found_classes
    model = build_model(args, num_classes, run)
    loader_train, loader_val, data_cfg = build_loaders(args, model, ds_train, ds_val, run)
    optimizer, scheduler, num_epochs = build_optimizer(args, model, len(loader_train))
    parts = Parts(model, model, optimizer, scheduler,
                  LabelSmoothingCrossEntropy(args.smoothing) if args.smoothing > 0 else nn.CrossEntropyLoss(),
                  ema=ModelEmaV3(model, decay=args.model_ema_decay) if args.model_ema else None,
                  scaler=NativeScaler() if run.amp_dtype == torch.float16 else None)
    config = effective_config(args, data_cfg, num_classes=num_classes, world_size=run.world_size,
                              train_images=len(ds_train), eval_images=len(ds_val), updates_per_epoch=len(loader_train),
                              train_transform=[repr(t) for t in getattr(ds_train.transform, 'transforms', [])])
    if run.rank == 0 and args.recipe:
        print(format_config(config), flush=True)
    state = TrainState()
    if resume_from is not None:
        state = resume(resume_from, args.model, parts, loader_train.sampler, run)
        if run.rank == 0:
            print(f'resumed from {resume_from} at epoch {state.epoch}/{num_epochs} (update {state.updates})',
                  flush=True)
    parts.model = _wrap(model, args, run)

    if run.rank == 0:
        run.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for epoch in range(state.epoch, num_epochs):
        if run.world_size > 1 and hasattr(loader_train.sampler, 'set_epoch'):
            loader_train.sampler.set_epoch(epoch)
        epoch_lr = optimizer.param_groups[0]['lr']  # the learning rate this epoch starts with
        loss = train_one_epoch(parts, loader_train, run, state, epoch, f'{args.model} epoch {epoch + 1}/{num_epochs}')
        scheduler.step(epoch + 1)
        state.acc = validate(parts.model, loader_val, run)
        if parts.ema is not None:
            state.acc_ema = validate(parts.ema.module, loader_val, run)
        state.epoch = epoch + 1
        state.history.append(dict(epoch=state.epoch, train_loss=loss, val_accuracy=state.acc, lr=epoch_lr))
        is_best, state.best = state.acc > state.best, max(state.acc, state.best)
        _check_weights(parts, epoch, run.out_dir)
        rng_states = _gather_rng_states(loader_train.sampler, run)
        if run.rank == 0:
            ema_txt = f' | ema val acc {state.acc_ema:.3f}' if state.acc_ema is not None else ''
            print(f'[{args.model}] epoch {state.epoch}/{num_epochs} | train loss {loss:.4f} | val acc {state.acc:.3f}'
                  f'{ema_txt} | {time.time() - start:.0f}s', flush=True)
            save_checkpoint(parts, state, args.model, rng_states, config, is_best, run.out_dir)
    if run.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return dict(model=args.model, val_accuracy=state.acc, best_accuracy=state.best, ema_val_accuracy=state.acc_ema,
                epochs=num_epochs, num_classes=num_classes, seconds=time.time() - start,
                checkpoint=str(run.out_dir / 'last.pth'), history=state.history, rank=run.rank)


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


def _run(args: argparse.Namespace) -> int:
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


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m timm_ext.train ARGV``. Bad input (as the ``dla-plugins`` command counts it: a wrong argument, a
    missing or unreadable file, a missing extra, weights that cannot be fetched) is one line ``error: ...`` on stderr
    and exit code 2; anything else (a bug, out of memory, a non-finite loss) keeps its traceback (exit code 1)."""
    args = parse_args(argv)
    return run_cli(PROG, lambda: _run(args), reraise=True)


if __name__ == '__main__':
    sys.exit(main())
