"""Golden fixture from mrnabati/CenterFusion: its own ``model/networks/dla.py`` (a CenterTrack fork) and
``base_model.py`` built for experiments/train.sh (``ddd`` on nuScenes with ``--pointcloud``).

    python tests/golden/generate_centerfusion.py --ref /tmp/cf-ref [--commit SHA] [--out tests/golden/data]

The checkpoint is built by CenterFusion's own ``model/model.py create_model('dla_34', opt.heads, opt.head_conv,
opt=opt)`` (``opt`` from its ``opts.py``) and read back by its ``load_model``. The compiled DCNv2 is ``_refgen``'s
stand-in; ``utils.ddd_utils.get_pc_hm`` and ``utils.pointcloud.generate_pc_hm`` (radar heatmaps, imported by
``base_model.py``, unused to build the network) are placeholders. Outputs are the trunk's (``DLASeg.img2feats``); the
key manifest proves the family: CenterTrack's ``dla.py`` without previous-frame inputs or a ``tracking`` head is
CenterNet's ``pose_dla_dcn`` layout.
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

OPTS = ['ddd', '--exp_id', 'centerfusion', '--nuscenes_att', '--velocity', '--pointcloud', '--radar_sweeps', '3',
        '--pc_z_offset', '0.0', '--pillar_dims', '1.0,0.2,0.2', '--max_pc_dist', '60.0', '--load_model',
        '../models/centernet_baseline_e170.pth']
NUSCENES = types.SimpleNamespace(num_categories=10, default_resolution=[448, 800])  # dataset/datasets/nuscenes.py
INPUT = [1, 3, 96, 64]
SEED = 5601


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    fake_module('utils', path=os.path.join(lib, 'utils'))
    fake_module('utils.ddd_utils', get_pc_hm=placeholder)
    fake_module('utils.pointcloud', generate_pc_hm=placeholder)
    fake_module('_ref_cf', path=lib)
    fake_module('_ref_cf.model', path=os.path.join(lib, 'model'))
    fake_module('_ref_cf.model.networks', path=os.path.join(lib, 'model', 'networks'))
    fake_module('_ref_cf.model.networks.DCNv2')
    dcn_module('_ref_cf.model.networks.DCNv2.dcn_v2')
    fake_module('_ref_cf.model.networks.generic_network', GenericNetwork=placeholder)
    model = importlib.import_module('_ref_cf.model.model')
    spec = importlib.util.spec_from_file_location('_ref_cf_opts', os.path.join(lib, 'opts.py'))
    opts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opts)
    parser = opts.opts()
    opt = parser.update_dataset_info_and_set_heads(parser.parse(OPTS), NUSCENES)
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
        f'CenterFusion model/networks/dla.py DLASeg(34, heads={opt.heads}, head_convs={opt.head_conv}, opt) built by '
        'model/model.py create_model("dla_34", opt.heads, opt.head_conv, opt=opt), opt from opts.py for '
        'experiments/train.sh (ddd on nuScenes, --nuscenes_att --velocity --pointcloud; --load_model set, so no '
        'base.fc). ddd: no pre_img/pre_hm input convs, no "tracking" head. Top-level keys besides the trunk (heads, '
        f'incl. the radar-fused secondary heads): {tops}.',
        describe_ida_stages(m.dla_up), 'ida_up ' + describe_ida(m.ida_up) + '.',
        "Outputs: level0..5 (DLA.forward), features = DLASeg.img2feats(x)[-1] (64 ch, stride 4). Container: "
        "model/model.py save_model -> {'epoch', 'state_dict'}.",
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'mrnabati/CenterFusion').parse_args()
    model_py, opt = import_reference(args.ref)

    def build():
        torch.manual_seed(0)
        return model_py.create_model('dla_34', dict(opt.heads), opt.head_conv, opt=opt).eval()

    model = build()
    ref = reference(args, 'src/lib/model/networks/dla.py', "model/model.py create_model('dla_34', opt.heads, "
                    'opt.head_conv, opt=opt); opt = opts().parse(experiments/train.sh args) + '
                    'update_dataset_info_and_set_heads(nuscenes)')
    container = {'state_dict_key': 'state_dict', 'extra': {'epoch': 1}}
    man = manifest('centerfusion_dla34_dcn', 'centerfusion', ref, SEED, model.state_dict(),
                   {'shape': INPUT, 'seed': SEED + 1}, container=container, notes=notes(model, opt))
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)
    roundtrip(man, lambda path: run(model_py.load_model(build(), path, opt).eval(), x), outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
