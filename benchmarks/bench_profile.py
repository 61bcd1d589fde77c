"""Where eval time goes: torch.profiler tables of timm's DLA (channels_last) and our fused path, same weights.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_profile --variant dla34 --batch-size 8 --img-size 224
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench import timm_reference
from dla_plugins import create_dla
from dla_plugins.deploy.fuse import optimize_for_inference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--variant', default='dla34')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--iters', type=int, default=2)
    p.add_argument('--rows', type=int, default=12)
    args = p.parse_args()
    theirs = timm_reference(args.variant).eval().to(memory_format=torch.channels_last)
    ours = create_dla(args.variant)
    ours.load_state_dict(theirs.state_dict())
    fused = optimize_for_inference(ours)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size).contiguous(memory_format=torch.channels_last)
    for name, model in (('timm channels_last', theirs), ('ours fused channels_last', fused)):
        with torch.inference_mode():
            model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.iters):
                    model(x)
        print(f'== {name}: {args.variant}, batch {args.batch_size}, {args.img_size}px, {args.iters} iters')
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=args.rows, max_name_column_width=40))


if __name__ == '__main__':
    main()
