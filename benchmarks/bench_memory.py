"""Peak training-step memory, timm vs ours vs ours with gradient checkpointing (each in a fresh subprocess).

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_memory --variants dla34,dla60x --batch-size 8 --img-size 224
"""
import argparse
import json

from benchmarks.bench import measure_train_memory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variants', default='dla34,dla60x')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--device', default='cpu')
    p.add_argument('--format', default='cl', choices=('cl', 'nchw'))
    args = p.parse_args()
    print('| variant | timm MiB | ours MiB | ours + grad ckpt MiB | ckpt / timm |\n|---|---|---|---|---|')
    for v in args.variants.split(','):
        r = {k: measure_train_memory(impl, v, args.batch_size, args.img_size, args.device, args.format, ck)['peak_mib']
             for k, impl, ck in (('timm', 'timm', False), ('ours', 'ours', False), ('ckpt', 'ours', True))}
        ratio = r['ckpt'] / r['timm']
        print(f"| {v} | {r['timm']:.0f} | {r['ours']:.0f} | {r['ckpt']:.0f} | {ratio:.2f} |", flush=True)
        print(json.dumps(dict(variant=v, **r)), flush=True)


if __name__ == '__main__':
    main()
