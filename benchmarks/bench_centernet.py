"""CenterNet's ctdet detector (DLA-34 + deformable DLA-Up, heads, top-100 decode) against xingyizhou/CenterNet's own
code, network + decode, in one interleaved run; ratios printed (> 1: ours is faster).

    python -m benchmarks.bench_centernet --ref /path/to/CenterNet [--device cpu] [--img-size 512] [--rounds 5]

``--ref`` is a CenterNet checkout (never part of this repository): its ``pose_dla_dcn`` network built by its own
``create_model('dla_34', {'hm': 80, 'wh': 2, 'reg': 2}, 256)`` and its ``models/decode.py`` ``ctdet_decode``; the
compiled DCNv2 is replaced by the torchvision stand-in of ``tests/golden/_refgen`` (DCNv2's parameter names and math).
Both sides hold the same seeded weights (the ``centernet_dla34_dcn`` golden manifest) and must agree before timing.
Configurations: ``reference`` (the anchor), ``ours`` (:class:`dla_plugins.CenterNet` eager, ``dcn_impl='auto'``),
``ours-fused`` (:func:`dla_plugins.deploy.optimize_for_inference`: BatchNorm folded, oneDNN conv+ReLU on CPU) and,
with ``--compile``, ``ours-compiled`` (``torch.compile`` of the fused model). CenterNet publishes 52 FPS for this
network on a Titan Xp without flip test (readme/MODEL_ZOO.md): ``--device cuda`` measures it where a GPU is lent.
"""
import argparse
import importlib
from typing import Any, Callable, Dict, Optional, Sequence

import torch

from dla_plugins import CenterNet
from dla_plugins.centernet import ctdet_decode
from dla_plugins.deploy.fuse import optimize_for_inference

from .measure import add_run_options, bar_chart, finish, interleaved, machine, median_ratio, write_results

__all__ = ['run_centernet_bench', 'to_markdown', 'main', 'reference_detector']

HEADS = {'hm': 80, 'wh': 2, 'reg': 2}


def reference_detector(ref: str) -> Callable[[torch.Tensor], Any]:
    """CenterNet's network and decoder from the checkout ``ref``, holding the golden manifest's seeded weights."""
    from tests.golden import load_manifest, synth_state_dict
    from tests.golden.generate_centernet import import_reference

    model_py, _, _ = import_reference(ref)
    net = model_py.create_model('dla_34', dict(HEADS), 256)
    net.load_state_dict(synth_state_dict(load_manifest('centernet_dla34_dcn')), strict=True)
    decode = importlib.import_module('_ref_centernet.decode').ctdet_decode
    return net.eval(), decode


def _ours(device: torch.device) -> CenterNet:
    from tests.golden import load_manifest, synth_state_dict

    model = CenterNet('dla34', heads=dict(HEADS))
    model.load_weights(synth_state_dict(load_manifest('centernet_dla34_dcn')))
    return model.eval().to(device)


def _agree(ref_fn: Callable[[], Any], ours_fn: Callable[[], Any]) -> float:
    """Max |difference| of the top-100 scores of both sides (they hold the same weights)."""
    theirs, ours = ref_fn(), ours_fn()
    return (theirs[..., 4] - ours[1]).abs().max().item()


def run_centernet_bench(ref: str, device: str = 'cpu', img_size: int = 512, batch_size: int = 1, rounds: int = 5,
                        warmup: int = 1, compile: bool = False, progress: bool = True) -> Dict[str, Any]:
    """Seconds per forward + decode of every configuration (interleaved rounds) and each one's speed-up over the
    reference (median of per-round ratios)."""
    if img_size % 32 or img_size < 32:
        raise ValueError(f'img_size: {img_size!r}; allowed: a multiple of 32 >= 32')
    dev = torch.device(device)
    net, decode = reference_detector(ref)
    net.to(dev)
    ours = _ours(dev)
    fused = optimize_for_inference(ours)
    x = torch.randn(batch_size, 3, img_size, img_size, generator=torch.Generator().manual_seed(0)).to(dev)

    @torch.no_grad()
    def reference() -> torch.Tensor:
        out = net(x)[-1]
        return decode(out['hm'].sigmoid_(), out['wh'], reg=out['reg'], K=100)

    def ours_with(model: torch.nn.Module) -> Callable[[], Any]:
        @torch.no_grad()
        def run() -> Any:
            out = model(x)
            return ctdet_decode(out['hm'].sigmoid(), out['wh'], out['reg'], K=100)
        return run

    fns = {'reference': reference, 'ours': ours_with(ours), 'ours-fused': ours_with(fused)}
    if compile:
        fns['ours-compiled'] = ours_with(torch.compile(fused))
    diffs = {k: _agree(reference, fn) for k, fn in fns.items() if k != 'reference'}
    bad = {k: d for k, d in diffs.items() if d > 1e-4}
    if bad:
        raise RuntimeError(f'the sides disagree before timing (top-100 scores, max |diff|): {bad}')
    times = interleaved(fns, rounds, warmup, dev, 'centernet', progress)
    res = machine(dev)
    res.update(config=dict(img_size=img_size, batch_size=batch_size, rounds=rounds, warmup=warmup, ref=ref),
               median_ms={k: 1e3 * sorted(v)[len(v) // 2] for k, v in times.items()},
               speedup_vs_reference={k: median_ratio(times['reference'], v) for k, v in times.items()},
               max_score_diff=diffs)
    return finish(res)


def to_markdown(res: Dict[str, Any]) -> str:
    c = res['config']
    lines = [f"ctdet DLA-34 (DCN) {c['img_size']}x{c['img_size']}, batch {c['batch_size']}, network + top-100 decode; "
             f"{res['machine']['device']} ({res['machine']['processor']}, {res['machine']['torch_threads']} threads), "
             f"{c['rounds']} interleaved rounds", '', '| configuration | median ms | speed-up vs reference |',
             '|---|---|---|']
    for k, ms in res['median_ms'].items():
        lines.append(f"| {k} | {ms:.1f} | {res['speedup_vs_reference'][k]:.2f}x |")
    return '\n'.join(lines)


def plot(res: Dict[str, Any], path: str) -> None:
    speedups = res['speedup_vs_reference']
    bar_chart(path, list(speedups), {'speed-up': list(speedups.values())}, 'speed-up vs CenterNet (x)',
              'ctdet DLA-34: network + decode', hline=1.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='python -m benchmarks.bench_centernet', description=__doc__.split('\n')[0])
    p.add_argument('--ref', required=True, help='a checkout of https://github.com/xingyizhou/CenterNet')
    p.add_argument('--device', default='cpu')
    p.add_argument('--img-size', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--compile', action='store_true', help='also torch.compile the fused model')
    add_run_options(p, 'centernet')
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run_centernet_bench(args.ref, args.device, args.img_size, args.batch_size, args.rounds, args.warmup,
                              args.compile, not args.no_progress)
    return write_results(res, args.out, args.name, to_markdown, plot)


if __name__ == '__main__':
    raise SystemExit(main())
