"""The ``dla-plugins`` command line: ``zoo``, ``demo``, ``bench``, ``bench-dcn``, ``convert``, ``export`` and
``gpu-check``."""
import argparse
import json
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .extras import MissingExtraError, require
from .params import add_params_parser

__all__ = ['main', 'build_parser', 'convert_checkpoint', 'infer_variant']


def _variant_list(text: str) -> List[str]:
    from ..variants import resolve_variant

    try:
        return [resolve_variant(v.strip()).name for v in text.split(',') if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import GFLOPS_NOTE, format_rows, zoo_rows

    rows = zoo_rows(args.variants, gflops=not args.no_gflops, img_size=args.img_size)
    if args.format == 'json':
        print(json.dumps(rows, indent=2))
    else:
        print(format_rows(rows, args.format))
        if not args.no_gflops:
            print(('\n' if args.format == 'md' else '') + GFLOPS_NOTE.format(size=args.img_size))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import train_shapes_classifier

    res = train_shapes_classifier(args.variant, epochs=args.epochs)
    print(f"[core] {args.variant} on synthetic shapes: loss {res['first_loss']:.3f} -> {res['final_loss']:.3f}, "
          f"val accuracy {res['val_accuracy']:.3f} (chance {res['chance']:.2f}), {res['seconds']:.0f}s")
    return 0


def _write_results(res: Dict[str, Any], out: str, name: str, to_markdown: Callable[[Dict[str, Any]], str],
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


def _cmd_bench(args: argparse.Namespace) -> int:
    for module, extra in (('timm', 'timm'), ('fvcore', 'bench'), ('matplotlib', 'bench')):
        require(module, extra, 'dla-plugins bench')
    from .bench import plot, run_bench, to_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_bench(args.variants, batch_size=args.batch_size, img_size=args.img_size, modes=args.modes.split(','),
                    dtypes=args.dtypes.split(','), formats=args.formats.split(','), compile=args.compile,
                    rounds=args.rounds, warmup=args.warmup, memory=not args.no_memory, device=args.device,
                    progress=not args.no_progress)
    return _write_results(res, args.out, args.name, to_markdown, plot)


def _cmd_bench_dcn(args: argparse.Namespace) -> int:
    from .bench_dcn import plot, run_dcn_bench, to_markdown

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = [int(v) for v in args.op_shape.split(',')] if args.op_shape else None
    res = run_dcn_bench(args.device, dtypes=args.dtypes.split(','), compile=args.compile, rounds=args.rounds,
                        warmup=args.warmup, smoke=args.smoke, op_shape=shape, variant=args.variant,
                        batch_size=args.batch_size, img_size=args.img_size, model=not args.no_model,
                        memory=not args.no_memory, progress=not args.no_progress)
    return _write_results(res, args.out, args.name, to_markdown, plot)


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    import dataclasses

    from .gpu_check import FULL, SMOKE, docs_section, run_gpu_check, summary_table, write_docs_section

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


def infer_variant(state: Dict[str, torch.Tensor], norm_layer: Optional[str] = None) -> Tuple[str, int]:
    """Find the one variant whose backbone accepts ``state`` (any recognised layout); returns (variant, classes).

    Raises:
        CheckpointError: no variant or several variants match.
    """
    from ..checkpoint import CheckpointError, load_checkpoint
    from ..factory import create_dla
    from ..variants import VARIANTS

    classes = int(state['fc.weight'].shape[0]) if 'fc.weight' in state else 0
    stem = state.get('base_layer.0.weight')
    matches = []
    for name, v in VARIANTS.items():
        if stem is not None and tuple(stem.shape[:1]) != (v.channels[0],):
            continue
        with torch.device('meta'):  # shapes only: no memory, no weight init cost
            model = create_dla(name, num_classes=classes, in_chans=int(stem.shape[1]) if stem is not None else 3,
                               norm_layer=norm_layer)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # copying into meta tensors is a (warned) no-op
                load_checkpoint(model, state)
        except CheckpointError:
            continue
        matches.append(name)
    if len(matches) != 1:
        what = 'no DLA variant' if not matches else f'several variants ({", ".join(matches)})'
        raise CheckpointError(f'checkpoint: {what} match its keys and shapes; pass --variant')
    return matches[0], classes


TARGETS = ('core', 'detectron2', 'mmseg')


def convert_checkpoint(src: str, dst: str, variant: Optional[str] = None, progress: bool = True,
                       to: str = 'core') -> Dict[str, object]:
    """Convert a checkpoint of any recognised layout (.pth/.pt/.bin/.safetensors) for ``to``, verified strictly.

    The layout (timm, ucbdrive classifier or DLASeg, CenterNet, FairMOT, CenterTrack, mmdetection3d, CenterNet2) is
    recognised by rule and loaded strictly into our model of that network: a DLA, or the DLASeg its DLA-Up
    describes. ``to='core'`` writes that model's state_dict as safetensors, re-reads it, loads it strictly into a
    fresh model and compares every tensor; 'detectron2' and 'mmseg' write a .pth with the hosts' key names.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..checkpoint import CheckpointError, detect_layout, load_checkpoint, read_state_dict
    from ..checkpoint.hosts import to_host
    from ..factory import create_dla
    from ..seg import DLASeg

    if to not in TARGETS:
        raise ValueError(f'--to: unknown target {to!r}; allowed: {list(TARGETS)}')
    ext = '.safetensors' if to == 'core' else '.pth'
    if not dst.endswith(ext):
        raise ValueError(f'DST: must end with {ext} for --to {to}, got {dst!r}')
    bar = tqdm(total=4, desc='convert', disable=not progress, leave=False)
    state = read_state_dict(src)
    bar.update()
    seg_kwargs = detect_layout(state).model_kwargs(state)
    classes = int(state['fc.weight'].shape[0]) if 'fc.weight' in state else 0
    in_chans = int(state['base_layer.0.weight'].shape[1]) if 'base_layer.0.weight' in state else 3
    if variant is None:
        variant, classes = infer_variant(state, seg_kwargs.get('norm_layer'))
        if seg_kwargs:
            classes = seg_kwargs['num_classes']

    def build() -> torch.nn.Module:
        if seg_kwargs:
            return DLASeg(variant, **seg_kwargs)
        return create_dla(variant, num_classes=classes, in_chans=in_chans)

    model = build()
    report = load_checkpoint(model, state)
    bar.update()
    out = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if to == 'core':
        save_file(out, dst, metadata={'format': 'pt', 'variant': variant, 'source_layout': report.layout,
                                      'network': json.dumps(seg_kwargs)})
        bar.update()
        check = build()
        load_checkpoint(check, read_state_dict(dst))
        for k, v in check.state_dict().items():
            if not torch.equal(v, out[k]):
                raise CheckpointError(f'convert: {k} differs after the round trip')
    else:
        host = to_host(out, to)
        torch.save({'model': host, '__author__': 'dla-plugins', 'matching_heuristics': False} if to == 'detectron2'
                   else {'state_dict': host, 'meta': {'source_layout': report.layout, 'variant': variant}}, dst)
        out = host
        bar.update()
    bar.update()
    bar.close()
    return dict(variant=variant, num_classes=classes, layout=report.layout, description=report.description,
                keys=len(out), dropped_unused=report.dropped_unused, skipped=report.skipped, network=seg_kwargs,
                summary=report.summary())


def _cmd_convert(args: argparse.Namespace) -> int:
    info = convert_checkpoint(args.src, args.dst, args.variant, progress=not args.no_progress, to=args.to)
    network = info['network']
    what = 'DLASeg(' + ', '.join(f'{k}={v!r}' for k, v in network.items()) + ')' if network else 'DLA'
    print(f"converted {args.src} ({info['layout']} layout: {info['description']}) -> {args.dst} "
          f"[{args.to}]: {info['variant']} {what}, {info['num_classes']} classes, {info['keys']} tensors, "
          'loads strictly')
    skipped = info['summary'].splitlines()[1:]
    print('\n'.join(skipped) if skipped else 'skipped nothing')
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..deploy.export import build_export_model, check_onnx, check_torchscript, export_onnx, export_torchscript

    if not args.onnx and not args.torchscript:
        raise SystemExit('dla-plugins export: give --onnx PATH and/or --torchscript PATH')
    if args.onnx:
        for module in ('onnx', 'onnxruntime'):
            require(module, 'export', 'dla-plugins export --onnx')
    size = (args.img_size, args.img_size)
    model = build_export_model(args.variant, args.what, args.num_classes, args.node_type, args.checkpoint)
    steps = [s for s, p in (('onnx', args.onnx), ('torchscript', args.torchscript)) if p]
    for step in tqdm(steps, desc='export', disable=args.no_progress, leave=False):
        if step == 'onnx':
            export_onnx(model, args.onnx, size, deform=args.deform_onnx)
            diff = check_onnx(model, args.onnx, size)
            print(f'wrote {args.onnx}; onnxruntime matches eager (max abs diff {diff:.2e})')
        else:
            export_torchscript(model, args.torchscript)
            diff = check_torchscript(model, args.torchscript, size)
            print(f'wrote {args.torchscript}; TorchScript matches eager (max abs diff {diff:.2e})')
    return 0


def _add_bench_run_options(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument('--rounds', type=int, default=5, help='timed rounds (each times every config once)')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--no-memory', action='store_true', help='skip the peak training memory subprocesses')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: torch default)')
    p.add_argument('--out', default='output/bench', help='output folder (default output/bench, git-ignored)')
    p.add_argument('--name', default=name)
    p.add_argument('--no-progress', action='store_true')


def build_parser() -> argparse.ArgumentParser:
    from ..variants import list_variants

    p = argparse.ArgumentParser(prog='dla-plugins', description='Deep Layer Aggregation tools.')
    sub = p.add_subparsers(dest='command', required=True)
    z = sub.add_parser('zoo', help='list every variant with its params, GFLOPs and feature levels',
                       description='Every variant: paper name, block, params (ours / paper / timm), GFLOPs (fvcore, '
                                   'MACs), feature channels and strides.')
    z.add_argument('--format', choices=('table', 'json', 'md'), default='table')
    z.add_argument('--variants', type=_variant_list, default=None, help='comma-separated subset (default: all)')
    z.add_argument('--img-size', type=int, default=224, help='image size for GFLOPs (default 224)')
    z.add_argument('--no-gflops', action='store_true', help='skip the (slow) fvcore FLOP count')
    z.set_defaults(func=_cmd_zoo)

    d = sub.add_parser('demo', help='train a small DLA on synthetic shapes (CPU, ~1 minute)')
    d.add_argument('--variant', default='dla46_c')
    d.add_argument('--epochs', type=int, default=3)
    d.set_defaults(func=_cmd_demo)

    b = sub.add_parser('bench', help="throughput and memory: ours vs timm's built-in DLA (same weights)",
                       description="Interleaved benchmark of ours vs timm's DLA (same weights, same process). Each "
                                   'side is reported at its best configuration; ratios are medians of per-round '
                                   'ratios. Writes NAME.json, NAME.md and NAME.png into --out.')
    b.add_argument('--variants', type=_variant_list, default=['dla34'], help='comma-separated (default dla34)')
    b.add_argument('--batch-size', type=int, default=8)
    b.add_argument('--img-size', type=int, default=224)
    b.add_argument('--modes', default='eval,train', help="comma-separated of 'eval', 'train'")
    b.add_argument('--dtypes', default='fp32', help="comma-separated of 'fp32', 'bf16' (autocast)")
    b.add_argument('--formats', default='nchw,cl', help="memory formats: comma-separated of 'nchw', 'cl'")
    b.add_argument('--compile', action='store_true', help='torch.compile both sides (slow on CPU)')
    b.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    _add_bench_run_options(b, 'bench')
    b.set_defaults(func=_cmd_bench)

    bd = sub.add_parser('bench-dcn', help='deformable conv: native vs torchvision vs mmcv vs plain conv, op + DLASeg',
                        description='Interleaved benchmark of deform_conv2d implementations (native, torchvision, '
                                    "mmcv's op when importable) against a plain 3x3 conv, forward and backward, and "
                                    'of DLASeg with deformable nodes against the conv-node model. Writes NAME.json, '
                                    'NAME.md and NAME.png into --out.')
    bd.add_argument('--device', default='cpu', help='cpu or cuda (default cpu)')
    bd.add_argument('--dtypes', default='fp32', help="comma-separated of 'fp32', 'bf16', 'fp16'")
    bd.add_argument('--compile', action='store_true', help='also torch.compile the native op and the models')
    bd.add_argument('--op-shape', default=None, help='B,C_in,C_out,H,W of the single conv (default 2,128,64,64,64)')
    bd.add_argument('--variant', default='dla34', help='DLASeg backbone (default dla34)')
    bd.add_argument('--batch-size', type=int, default=2)
    bd.add_argument('--img-size', type=int, default=128)
    bd.add_argument('--no-model', action='store_true', help='skip the DLASeg section')
    bd.add_argument('--smoke', action='store_true', help='tiny shapes, one round (CI dry run)')
    _add_bench_run_options(bd, 'bench_dcn')
    bd.set_defaults(func=_cmd_bench_dcn)

    c = sub.add_parser('convert', help='any recognised DLA checkpoint -> core safetensors or a host checkpoint',
                       description='Convert a DLA checkpoint (timm, ucbdrive classifier or DLASeg, CenterNet, FairMOT, '
                                   'CenterTrack, mmdetection3d, CenterNet2): the layout is recognised by rule and '
                                   'printed with everything skipped (task heads, ...). The variant is inferred from '
                                   'key shapes unless --variant is given.')
    c.add_argument('src', help='.pth/.pt/.bin/.safetensors checkpoint (loaded with weights_only=True)')
    c.add_argument('dst', help='output .safetensors')
    c.add_argument('--variant', default=None, choices=list_variants(), metavar='VARIANT',
                   help='one of: ' + ', '.join(list_variants()))
    c.add_argument('--to', default='core', choices=TARGETS,
                   help='core: our safetensors (default); detectron2: MODEL.WEIGHTS .pth; mmseg: load_from .pth')
    c.add_argument('--no-progress', action='store_true')
    c.set_defaults(func=_cmd_convert)

    e = sub.add_parser('export', help='ONNX / TorchScript export, checked against onnxruntime / eager',
                       description='Export a classifier, backbone (six level outputs) or DLASeg (conv or deformable '
                                   'nodes) and check the exported outputs against the eager model.')
    e.add_argument('variant', choices=list_variants(), metavar='VARIANT', help='one of: ' + ', '.join(list_variants()))
    e.add_argument('--onnx', default=None, help='output .onnx path')
    e.add_argument('--torchscript', default=None, help='output TorchScript .pt path')
    e.add_argument('--what', choices=('classifier', 'backbone', 'seg'), default='classifier')
    e.add_argument('--node-type', choices=('conv', 'dcn'), default='conv', help='DLASeg aggregation nodes')
    e.add_argument('--deform-onnx', choices=('op', 'plain'), default='op',
                   help="deformable nodes in ONNX: 'op' (DeformConv, opset 19) or 'plain' (Gather/MatMul, opset 17)")
    e.add_argument('--num-classes', type=int, default=None)
    e.add_argument('--checkpoint', default=None, help='weights to load (timm/ucbdrive layout)')
    e.add_argument('--img-size', type=int, default=224,
                   help='size of the check input (batch and spatial axes are dynamic)')
    e.add_argument('--no-progress', action='store_true')
    e.set_defaults(func=_cmd_export)
    g = sub.add_parser('gpu-check', help='every CUDA path in one run: bench, DCN bench, timm/d2/mmseg training',
                       description='Runs the benchmark (ours vs timm, bf16, channels_last, eager and compiled, GEMM '
                                   'fraction, largest batch with gradient checkpointing), the DCN benchmark, and a '
                                   'short training in each host on synthetic data; records pass/fail and figures in '
                                   'OUT/results.json, prints a summary table and (full CUDA run) writes the GPU '
                                   'section of --docs. Exits 1 if a step fails. --device cpu --smoke: the same '
                                   'pipeline at toy sizes (the CI dry run).')
    g.add_argument('--device', choices=('cuda', 'cpu'), default='cuda')
    g.add_argument('--smoke', action='store_true', help='toy sizes, CPU-safe options (the dry run)')
    g.add_argument('--out', default='output/gpu_check', help='output folder (default output/gpu_check, git-ignored)')
    g.add_argument('--docs', default='docs/benchmarks.md',
                   help="markdown file whose marked GPU section a full CUDA run replaces ('' for none)")
    g.add_argument('--skip', default='', help='comma-separated steps to skip: bench,dcn,timm,d2,mmseg')
    g.add_argument('--merge', action='store_true',
                   help="keep the skipped steps' results of an earlier run in --out (split a check over commands)")
    g.add_argument('--variants', type=_variant_list, default=None,
                   help='bench variants (default dla34,dla60x,dla102; smoke dla46_c)')
    g.add_argument('--batch-size', type=int, default=None, help='bench batch (default 256; smoke 2)')
    g.add_argument('--memory-budget-gib', type=float, default=None,
                   help='largest-batch search: a batch fits if its step needs at most this much (default: the '
                        "device's memory)")
    g.add_argument('--no-progress', action='store_true')
    g.set_defaults(func=_cmd_gpu_check)
    add_params_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, MissingExtraError) as e:  # CheckpointError/ExportError are RuntimeErrors
        print(f'dla-plugins {args.command}: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
