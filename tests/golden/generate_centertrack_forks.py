"""Golden fixtures from CenterTrack's forks (TraDeS, CenterFusion, PermaTrack), each from its own code.

    python tests/golden/generate_centertrack_forks.py --project trades --ref /tmp/trades-ref
    python tests/golden/generate_centertrack_forks.py --project centerfusion --ref /tmp/cf-ref
    python tests/golden/generate_centertrack_forks.py --project permatrack --ref /tmp/pt-ref

Each checkpoint is built by the project's own ``model/model.py create_model('dla_34', opt.heads, opt.head_conv,
opt=opt)`` (``opt`` from its own ``opts.py`` with the arguments of the command its README or experiments give,
``src/lib`` on ``sys.path`` as its scripts run) and read back by its own ``load_model``. The compiled DCNv2 (``DCN``;
TraDeS's ``DCN_TraDeS``) is ``_refgen``'s stand-in with the same parameters; imports used only by training or
decoding (CenterFusion's radar heatmaps) are placeholders. Outputs are the trunk's (``DLASeg.img2feats``: what the
heads read for one frame). The key manifests prove each project's family (tests/weights/test_families.py).
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
    DCNv2,
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

INPUT = [1, 3, 96, 64]


class DCN_TraDeS(DCNv2):  # noqa: N801 (the reference's name)
    """DCNv2's ``DCNv2`` with offsets and mask given by the caller (TraDeS's MFW): ``weight``, ``bias``."""


PROJECTS = {  # project -> repository, seed, command (its source), dataset info, stubs, what the trunk is
    'trades': dict(
        repo='JialianW/TraDeS', seed=5501, source='experiments/mot17_train.sh',
        argv=['tracking', '--exp_id', 'mot17_half', '--dataset', 'mot', '--dataset_version', '17halftrain',
              '--pre_hm', '--ltrb_amodal', '--same_aug', '--load_model', '../models/crowdhuman.pth', '--clip_len', '3',
              '--trades'],
        dataset=types.SimpleNamespace(num_categories=1, default_resolution=[544, 960]),  # dataset/datasets/mot.py
        stubs={}, about="--trades: no 'tracking' head (opts.py); base_model.py adds TraDeS's CVA/MFW modules; "
                        "TraDeS's dla.py builds no pre_img_layer/pre_hm_layer (CenterTrack's does)."),
    'centerfusion': dict(
        repo='mrnabati/CenterFusion', seed=5601, source='experiments/train.sh',
        argv=['ddd', '--exp_id', 'centerfusion', '--nuscenes_att', '--velocity', '--pointcloud', '--radar_sweeps', '3',
              '--pc_z_offset', '0.0', '--pillar_dims', '1.0,0.2,0.2', '--max_pc_dist', '60.0', '--load_model',
              '../models/centernet_baseline_e170.pth'],
        dataset=types.SimpleNamespace(num_categories=10, default_resolution=[448, 800]),  # datasets/nuscenes.py
        stubs={'utils.ddd_utils': dict(get_pc_hm=placeholder), 'utils.pointcloud': dict(generate_pc_hm=placeholder)},
        about="ddd: no pre_img/pre_hm input convs, no 'tracking' head; the radar-fused secondary heads are heads."),
    'permatrack': dict(
        repo='TRI-ML/permatrack', seed=5701, source='readme/GETTING_STARTED.md (KITTI test command)',
        argv=['tracking', '--exp_id', 'kitti_half', '--dataset', 'kitti_tracking', '--dataset_version', 'val_half',
              '--track_thresh', '0.4', '--load_model', '../models/kitti_half_pd_5ep.pth', '--is_recurrent',
              '--gru_filter_size', '7', '--num_gru_layers', '1', '--visibility', '--visibility_thresh_eval', '0.2',
              '--stream_test'],
        dataset=types.SimpleNamespace(num_categories=5, default_resolution=[384, 1280]),  # kitti_tracking.py
        stubs={}, about='--is_recurrent: dla.py builds no pre_img/pre_hm input convs; base_model.py adds conv_gru.'),
}


def import_reference(ref: str, project: dict):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    sys.path.insert(0, lib)  # the projects import model.*, utils.* by absolute names
    for name, attrs in project['stubs'].items():
        fake_module(name, **attrs)
    fake_module('model', path=os.path.join(lib, 'model'))
    fake_module('model.networks', path=os.path.join(lib, 'model', 'networks'))
    fake_module('model.networks.DCNv2')
    dcn_module('model.networks.DCNv2.dcn_v2').DCN_TraDeS = DCN_TraDeS
    fake_module('model.networks.generic_network', GenericNetwork=placeholder)
    model = importlib.import_module('model.model')
    spec = importlib.util.spec_from_file_location('_ref_opts', os.path.join(lib, 'opts.py'))
    opts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opts)
    parser = opts.opts()
    return model, parser.update_dataset_info_and_set_heads(parser.parse(project['argv']), project['dataset'])


def run(model, x):
    caught = {}
    handle = model.base.register_forward_hook(lambda m, i, o: caught.__setitem__('levels', [t.clone() for t in o]))
    with torch.no_grad():
        feats = model.img2feats(x)[-1]
    handle.remove()
    return {**{f'level{i}': t for i, t in enumerate(caught['levels'])}, 'features': feats}


def notes(m, opt, project: dict) -> str:
    tops = sorted({k.split('.')[0] for k in m.state_dict()} - {'base', 'dla_up', 'ida_up'})
    return ' '.join([
        f"{project['repo']} model/networks/dla.py DLASeg(34, heads={opt.heads}, head_convs={opt.head_conv}, opt) "
        'built by model/model.py create_model("dla_34", opt.heads, opt.head_conv, opt=opt), opt from opts.py for '
        f"{project['source']} ({' '.join(project['argv'])}; --load_model set, so no base.fc). {project['about']} "
        f'Top-level keys besides the trunk: {tops}.',
        describe_ida_stages(m.dla_up), 'ida_up ' + describe_ida(m.ida_up) + '.',
        "Outputs: level0..5 (DLA.forward), features = DLASeg.img2feats(x)[-1] (64 ch, stride 4). Container: "
        "model/model.py save_model -> {'epoch', 'state_dict'}.",
    ])


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], '')
    parser.add_argument('--project', required=True, choices=sorted(PROJECTS))
    args = parser.parse_args()
    project = PROJECTS[args.project]
    args.repo = args.repo or project['repo']
    model_py, opt = import_reference(args.ref, project)

    def build():
        torch.manual_seed(0)
        return model_py.create_model('dla_34', dict(opt.heads), opt.head_conv, opt=opt).eval()

    model = build()
    ref = reference(args, 'src/lib/model/networks/dla.py', "model/model.py create_model('dla_34', opt.heads, "
                    f"opt.head_conv, opt=opt); opt = opts().parse({project['source']} args) + "
                    'update_dataset_info_and_set_heads(dataset)')
    man = manifest(f'{args.project}_dla34_dcn', args.project, ref, project['seed'], model.state_dict(),
                   {'shape': INPUT, 'seed': project['seed'] + 1},
                   container={'state_dict_key': 'state_dict', 'extra': {'epoch': 1}}, notes=notes(model, opt, project))
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)
    roundtrip(man, lambda path: run(model_py.load_model(build(), path, opt).eval(), x), outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
