"""Golden fixture from xinzhuma/monodle's own CenterNet3D (ucbdrive DLA-34 + monodle's DLAUp + 7 heads).

Runs the REAL reference code from a local checkout (never copied into this repository)::

    python tests/golden/generate_monodle.py --ref /tmp/monodle-ref --out tests/golden/data

``lib/models/centernet3d.py``, ``lib/backbones/dla.py`` and ``lib/backbones/dlaup.py`` are imported from the
checkout. ``CenterNet3D`` calls ``dla34(pretrained=True)``, whose ``load_pretrained_model`` downloads the ImageNet
file and loads it (its ``fc`` is put back as it was): here it is replaced by a no-op, which leaves the module tree, and
so the saved keys, unchanged. ``cv2`` (imported, unused by the model) is stubbed when absent.
"""
import importlib
import importlib.util
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden import make_input  # noqa: E402
from golden._refgen import common_args, fake_module, finish, load_synth, manifest, reference, roundtrip  # noqa: E402

INPUT = [1, 3, 64, 96]
SEED = 5301


def import_reference(ref: str):
    sys.path.insert(0, os.path.abspath(ref))
    if importlib.util.find_spec('cv2') is None:
        fake_module('cv2')
    dla = importlib.import_module('lib.backbones.dla')
    dla.DLA.load_pretrained_model = lambda self, *args, **kwargs: None  # no download; the tree is unchanged
    return importlib.import_module('lib.models.centernet3d')


def run(model, x):
    with torch.no_grad():
        levels = model.backbone(x)
        neck = model.neck(levels[model.first_level:])
    outs = {f'level{i}': t for i, t in enumerate(levels)}
    outs['neck'] = neck  # monodle's DLAUp output (not reproduced by our DLAUp: recorded for reference only)
    return outs


NOTES = ' '.join([
    "monodle lib/models/centernet3d.py CenterNet3D(backbone='dla34', neck='DLAUp', num_class=3, downsample=4), as "
    "lib/helpers/model_helper.py builds it: backbone = lib/backbones/dla.py dla34(pretrained=True, "
    "return_levels=True) = ucbdrive's DLA (BasicBlock, Tree, Root; 'fc' Conv2d(512, 1000, 1) kept), keys "
    "'backbone.*'; neck = lib/backbones/dlaup.py DLAUp(channels[2:], scales_list=[1, 2, 4, 8]), keys 'neck.ida_<i>.'; "
    "heads heatmap, offset_2d, size_2d, depth, offset_3d, size_3d, heading (Sequential(Conv2d(64, 256, 3, bias), ReLU, "
    "Conv2d(256, n, 1, bias)) -> '<head>.0.*', '<head>.2.*').",
    'DLAUp: ida_i = IDAUp(in_channels_list, up_factors_list, out_channels); for every input k >= 1: proj_k = '
    'Conv2d(cin, out, 3, padding 1, bias False) + BN + ReLU (module Conv2d: .conv, .bn) EVEN WHEN cin == out, up_k = '
    'ConvTranspose2d(out, out, 2f, stride f, padding f//2, groups out, bias False), node_k = Conv2d(2*out, out, 3, '
    'bias False) + BN + ReLU on cat([layers[k-1], up(proj(layers[k]))], 1). No final IDA-Up: DLAUp.forward returns '
    "layers[-1] (64 ch, stride 4), recorded as output 'neck'. Its graph has no equivalent among dla_plugins.DLAUp's "
    "flavours ('paper' projects only unequal widths with 1x1 convs; 'centernet' sums): only the backbone loads.",
    "Container: lib/helpers/save_helper.py get_checkpoint_state -> {'epoch', 'model_state', 'optimizer_state'}.",
])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'xinzhuma/monodle').parse_args()
    centernet3d = import_reference(args.ref)

    def build():
        torch.manual_seed(0)
        return centernet3d.CenterNet3D(backbone='dla34', neck='DLAUp', num_class=3, downsample=4).eval()

    model = build()
    ref = reference(args, 'lib/backbones/dlaup.py', "lib/models/centernet3d.py CenterNet3D(backbone='dla34', "
                                                    "neck='DLAUp', num_class=3, downsample=4)")
    container = {'state_dict_key': 'model_state', 'extra': {'epoch': 140, 'optimizer_state': None}}
    man = manifest('monodle_dla34', 'monodle', ref, SEED, model.state_dict(), {'shape': INPUT, 'seed': SEED + 1},
                   container=container, notes=NOTES)
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)

    def from_file(path):
        fresh = build()
        fresh.load_state_dict(torch.load(path, map_location='cpu', weights_only=True)['model_state'])
        return run(fresh.eval(), x)

    roundtrip(man, from_file, outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
