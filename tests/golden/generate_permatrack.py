"""Golden fixture from TRI-ML/permatrack: its own ``model/networks/dla.py`` (a CenterTrack fork) and
``base_model.py`` (with the ConvGRU) built as readme/GETTING_STARTED.md tests KITTI (``--is_recurrent``).

    python tests/golden/generate_permatrack.py --ref /tmp/pt-ref [--commit SHA] [--out tests/golden/data]

The checkpoint is built by PermaTrack's own ``model/model.py create_model('dla_34', opt.heads, opt.head_conv,
opt=opt)`` (``opt`` from its ``opts.py``; ``src/lib`` on ``sys.path`` as its scripts run) and read back by its
``load_model``. The compiled DCNv2 is ``_refgen``'s stand-in. Outputs are the trunk's (``DLASeg.img2feats``); the key
manifest proves the family: CenterTrack's layout with a ``tracking`` head, and no previous-frame input convs (not
built under ``--is_recurrent``).
"""
import importlib
import importlib.util
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden import make_input  # noqa: E402
from golden._refgen import (  # noqa: E402
    common_args,
    dcn_module,
    describe_ida,
    describe_ida_stages,
    fake_module,
    finish,
    load_synth,
    manifest,
    placeholder,
    reference,
    roundtrip,
)

OPTS = ['tracking', '--exp_id', 'kitti_half', '--dataset', 'kitti_tracking', '--dataset_version', 'val_half',
        '--track_thresh', '0.4', '--load_model', '../models/kitti_half_pd_5ep.pth', '--is_recurrent',
        '--gru_filter_size', '7', '--num_gru_layers', '1', '--visibility', '--visibility_thresh_eval', '0.2',
        '--stream_test']
KITTI = types.SimpleNamespace(num_categories=5, default_resolution=[384, 1280])  # dataset/datasets/kitti_tracking.py
INPUT = [1, 3, 96, 64]
SEED = 5701


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    sys.path.insert(0, lib)  # base_model.py imports model.decode, model.ConvGRU, utils.image by absolute names
    fake_module('model', path=os.path.join(lib, 'model'))
    fake_module('model.networks', path=os.path.join(lib, 'model', 'networks'))
    fake_module('model.networks.DCNv2')
    dcn_module('model.networks.DCNv2.dcn_v2')
    fake_module('model.networks.generic_network', GenericNetwork=placeholder)
    model = importlib.import_module('model.model')
    spec = importlib.util.spec_from_file_location('_ref_permatrack_opts', os.path.join(lib, 'opts.py'))
    opts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opts)
    parser = opts.opts()
    opt = parser.update_dataset_info_and_set_heads(parser.parse(OPTS), KITTI)
    return model, opt


def run(model, x):
    caught = {}
    handle = model.base.register_forward_hook(lambda m, i, o: caught.__setitem__('levels', [t.clone() for t in o]))
    with torch.no_grad():
        feats = model.img2feats(x)[-1]
    handle.remove()
    return {**{f'level{i}': t for i, t in enumerate(caught['levels'])}, 'features': feats}


def notes(m, opt) -> str:
    tops = sorted({k.split('.')[0] for k in m.state_dict()} - {'base', 'dla_up', 'ida_up'})
    return ' '.join([
        f'PermaTrack model/networks/dla.py DLASeg(34, heads={opt.heads}, head_convs={opt.head_conv}, opt) built by '
        'model/model.py create_model("dla_34", opt.heads, opt.head_conv, opt=opt), opt from opts.py for the KITTI '
        'test command of readme/GETTING_STARTED.md (tracking, --is_recurrent --gru_filter_size 7 --num_gru_layers 1 '
        '--visibility; --load_model set, so no base.fc). --is_recurrent: dla.py builds no pre_img/pre_hm input '
        f'convs; base_model.py adds conv_gru. Top-level keys besides the trunk: {tops}.',
        describe_ida_stages(m.dla_up), 'ida_up ' + describe_ida(m.ida_up) + '.',
        "Outputs: level0..5 (DLA.forward), features = DLASeg.img2feats(x)[-1] (64 ch, stride 4). Container: "
        "model/model.py save_model -> {'epoch', 'state_dict'}.",
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'TRI-ML/permatrack').parse_args()
    model_py, opt = import_reference(args.ref)

    def build():
        torch.manual_seed(0)
        return model_py.create_model('dla_34', dict(opt.heads), opt.head_conv, opt=opt).eval()

    model = build()
    ref = reference(args, 'src/lib/model/networks/dla.py', "model/model.py create_model('dla_34', opt.heads, "
                    'opt.head_conv, opt=opt); opt = opts().parse(readme/GETTING_STARTED.md KITTI args) + '
                    'update_dataset_info_and_set_heads(kitti_tracking)')
    container = {'state_dict_key': 'state_dict', 'extra': {'epoch': 1}}
    man = manifest('permatrack_dla34_dcn', 'permatrack', ref, SEED, model.state_dict(),
                   {'shape': INPUT, 'seed': SEED + 1}, container=container, notes=notes(model, opt))
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)
    roundtrip(man, lambda path: run(model_py.load_model(build(), path, opt).eval(), x), outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
