"""The ``dla-plugins`` command line: ``zoo``, ``demo``, ``convert`` and ``export``.

The benchmarks (``benchmarks/`` in the repository) are not part of the installed package."""
import argparse
import json
import sys
from typing import List, Optional

from .._extras import require
from ..checkpoint.hosts import host_names
from ..convert import targets
from .errors import run_cli
from .params import add_params_parser

__all__ = ['main', 'build_parser', 'variant_list']


def variant_list(text: str) -> List[str]:
    """argparse type: comma-separated variant names or aliases -> canonical names."""
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


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..convert import convert_checkpoint, format_options

    out = convert_checkpoint(args.src, args.dst, args.variant, to=args.to, prefix=args.prefix,
                             progress=not args.no_progress)
    network = out.network
    what = 'DLASeg(' + ', '.join(f'{k}={v!r}' for k, v in network.items()) + ')' if network else 'DLA'
    print(f"converted {args.src} ({out.report.layout} layout: {out.report.description}) -> {args.dst} "
          f"[{args.to}]: {out.variant} {what}, {out.num_classes} classes, {len(out.state)} tensors, loads strictly")
    skipped = out.report.summary().splitlines()[1:]
    print('\n'.join(skipped) if skipped else 'skipped nothing')
    print('build it with: ' + format_options(out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..deploy.export import check_torchscript, export_torchscript
    from ..deploy.pipeline import deploy_onnx, time_onnx
    from ..deploy.source import build_from_source

    if not args.onnx and not args.torchscript:
        raise SystemExit('dla-plugins export: give --onnx PATH and/or --torchscript PATH')
    if args.onnx:
        for module in ('onnx', 'onnxruntime') + (('openvino',) if args.runtime in ('openvino', 'any') else ()):
            require(module, 'export', 'dla-plugins export --onnx' + ('' if args.runtime == 'onnxruntime' else
                                                                     f' --runtime {args.runtime}'))
    size = (args.img_size, args.img_size)
    model = build_from_source(args.src, args.what, args.num_classes, args.node_type, args.checkpoint,
                              decode=args.decode, K=args.top_k)
    task = 'centernet' if args.what == 'centernet' else 'features' if args.what == 'backbone' else args.what
    steps = [s for s, p in (('onnx', args.onnx), ('torchscript', args.torchscript)) if p]
    for step in tqdm(steps, desc='export', disable=args.no_progress, leave=False):
        if step == 'onnx':
            report = deploy_onnx(model, args.onnx, args.runtime, args.precision, size, task, args.calibration,
                                 args.calibration_size, args.deform_onnx)
            print(report.summary())
            if args.latency and args.runtime in ('onnxruntime', 'openvino'):
                t = time_onnx(model, args.onnx, args.runtime, half=args.precision == 'fp16', img_size=size,
                              rounds=args.latency)
                print(f"latency, batch 1 at {args.img_size}px, median of {args.latency} alternating rounds: eager "
                      f"{t['eager_ms']:.1f} ms, {args.runtime} {t['runtime_ms']:.1f} ms ({t['speedup']:.2f}x)")
        else:
            export_torchscript(model, args.torchscript)
            diff = check_torchscript(model, args.torchscript, size)
            print(f'wrote {args.torchscript}; TorchScript matches eager (max abs diff {diff:.2e})')
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..variants import list_variants

    p = argparse.ArgumentParser(prog='dla-plugins', description='Deep Layer Aggregation tools.')
    sub = p.add_subparsers(dest='command', required=True)
    z = sub.add_parser('zoo', help='list every variant with its params, GFLOPs and feature levels',
                       description='Every variant: paper name, block, params (ours / paper / timm), GFLOPs (fvcore, '
                                   'MACs), feature channels and strides.')
    z.add_argument('--format', choices=('table', 'json', 'md'), default='table')
    z.add_argument('--variants', type=variant_list, default=None, help='comma-separated subset (default: all)')
    z.add_argument('--img-size', type=int, default=224, help='image size for GFLOPs (default 224)')
    z.add_argument('--no-gflops', action='store_true', help='skip the (slow) fvcore FLOP count')
    z.set_defaults(func=_cmd_zoo)

    d = sub.add_parser('demo', help='train a small DLA on synthetic shapes (CPU, ~1 minute)')
    d.add_argument('--variant', default='dla46_c')
    d.add_argument('--epochs', type=int, default=3)
    d.set_defaults(func=_cmd_demo)

    c = sub.add_parser('convert', help='any recognised DLA checkpoint -> core safetensors or a host checkpoint',
                       description='Convert a DLA checkpoint (timm, ucbdrive classifier or DLASeg, CenterNet, FairMOT, '
                                   'CenterTrack, mmdetection3d, CenterNet2): the layout is recognised by rule and '
                                   'printed with everything skipped (task heads, ...). The variant is inferred from '
                                   'key shapes unless --variant is given.')
    c.add_argument('src', help='.pth/.pt/.bin/.safetensors checkpoint (loaded with weights_only=True), or a registry '
                               'name dlap://NAME (`dla-plugins weights list`; fetched on first use)')
    c.add_argument('dst', help='output .safetensors')
    c.add_argument('--variant', default=None, choices=list_variants(), metavar='VARIANT',
                   help='one of: ' + ', '.join(list_variants()))
    c.add_argument('--to', default='core', choices=targets(),
                   help='core: our safetensors (default); a host (an installed adapter: ' + ', '.join(host_names()) +
                        '): the .pth its loader reads')
    c.add_argument('--prefix', default=None,
                   help="where the DLA goes, for hosts that keep it in several places (the adapter's docs; a wrong one "
                        'lists the allowed); default: the place of the model that fits the network, printed with the '
                        'options')
    c.add_argument('--no-progress', action='store_true')
    c.set_defaults(func=_cmd_convert)

    e = sub.add_parser('export', help='ONNX for onnxruntime / OpenVINO / TensorRT, fp32/fp16/int8, checked there',
                       description='Export a classifier, backbone (six level outputs), DLASeg or CenterNet detector '
                                   'in the form the target runtime runs natively, at fp32, fp16 or int8, and check '
                                   'the file in that runtime against the eager model (docs/deploy.md).')
    e.add_argument('src', metavar='SRC', help='a variant (' + ', '.join(list_variants()) + '), a registry name '
                   'dlap://NAME (`dla-plugins weights list`) or a checkpoint of any recognised layout (timm, '
                   'ucbdrive, CenterNet family, mmdetection3d, CenterNet2, ours)')
    e.add_argument('--onnx', default=None, help='output .onnx path')
    e.add_argument('--torchscript', default=None, help='output TorchScript .pt path')
    e.add_argument('--what', choices=('classifier', 'backbone', 'seg', 'centernet'), default='classifier')
    e.add_argument('--runtime', choices=('onnxruntime', 'openvino', 'tensorrt', 'any'), default='onnxruntime',
                   help="target runtime: picks the deformable form (onnxruntime/tensorrt: DeformConv; openvino: "
                        "its DeformableConv2D; any: standard operators)")
    e.add_argument('--precision', choices=('fp32', 'fp16', 'int8'), default='fp32',
                   help='fp16 graph, or int8 static QDQ calibrated on --calibration')
    e.add_argument('--calibration', default=None, metavar='DIR',
                   help='int8 calibration images (and the held-out batch after them); default: the synthetic set')
    e.add_argument('--calibration-size', type=int, default=32)
    e.add_argument('--decode', action='store_true', help='centernet: top-K decoding in the graph (boxes, scores, '
                                                          'classes) instead of the raw heads')
    e.add_argument('--top-k', type=int, default=100, help='centernet --decode: detections per image')
    e.add_argument('--node-type', choices=('conv', 'dcn'), default='conv',
                   help='aggregation nodes of a DLASeg/CenterNet built here (a variant SRC)')
    e.add_argument('--deform-onnx', choices=('op', 'openvino', 'plain'), default=None,
                   help="override the runtime's deformable form: 'op' (DeformConv, opset 19), 'openvino', 'plain'")
    e.add_argument('--num-classes', type=int, default=None)
    e.add_argument('--checkpoint', default=None, help='weights to load into a variant SRC (any recognised layout)')
    e.add_argument('--img-size', type=int, default=224,
                   help='size of the check input (batch and spatial axes are dynamic)')
    e.add_argument('--latency', type=int, default=0, metavar='ROUNDS',
                   help='also time the file against eager PyTorch (batch 1, ROUNDS alternating rounds)')
    e.add_argument('--no-progress', action='store_true')
    e.set_defaults(func=_cmd_export)
    from ..weights.cli import add_parser as add_weights_parser

    add_weights_parser(sub)
    add_params_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``dla-plugins ARGV``. Bad input (a wrong argument, an unreadable or mismatched checkpoint, a missing
    extra, weights that cannot be fetched) is one line on stderr and exit code 2; anything else is unexpected: its
    full traceback, then one line naming the command, and exit code 1 (:func:`~dla_plugins.tools.errors.run_cli`)."""
    args = build_parser().parse_args(argv)
    return run_cli(f'dla-plugins {args.command}', lambda: args.func(args))


if __name__ == '__main__':
    sys.exit(main())
