"""Golden fixture from JialianW/TraDeS: its own ``model/networks/dla.py`` (a CenterTrack fork) and ``base_model.py``
built for experiments/mot17_train.sh (``--trades``).

    python tests/golden/generate_trades.py --ref /tmp/trades-ref [--commit SHA] [--out tests/golden/data]

The checkpoint is built by TraDeS's own ``model/model.py create_model('dla_34', opt.heads, opt.head_conv, opt=opt)``
(``opt`` from its ``opts.py``) and read back by its ``load_model``. The compiled DCNv2 (``DCN`` in the DLA-Up,
``DCN_TraDeS`` of the motion-guided feature warper) is replaced by ``_refgen``'s stand-in with the same parameters.
Outputs are the trunk's (``DLASeg.img2feats``: what TraDeS's heads and its CVA/MFW modules read for one frame); the
key manifest proves the family: CenterTrack's ``dla.py`` without the previous-frame input convs and with no
``tracking`` head is CenterNet's ``pose_dla_dcn`` layout.
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

OPTS = ['tracking', '--exp_id', 'mot17_half', '--dataset', 'mot', '--dataset_version', '17halftrain', '--pre_hm',
        '--ltrb_amodal', '--same_aug', '--load_model', '../models/crowdhuman.pth', '--clip_len', '3', '--trades']
MOT = types.SimpleNamespace(num_categories=1, default_resolution=[544, 960])  # dataset/datasets/mot.py
INPUT = [1, 3, 96, 64]
SEED = 5501


class DCN_TraDeS(DCNv2):  # noqa: N801 (the reference's name)
    """DCNv2's ``DCNv2`` with offsets and mask given by the caller (TraDeS's MFW): ``weight``, ``bias``."""


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    fake_module('_ref_trades', path=lib)
    fake_module('_ref_trades.model', path=os.path.join(lib, 'model'))
    fake_module('_ref_trades.model.networks', path=os.path.join(lib, 'model', 'networks'))
    fake_module('_ref_trades.model.networks.DCNv2')
    dcn_module('_ref_trades.model.networks.DCNv2.dcn_v2').DCN_TraDeS = DCN_TraDeS
    fake_module('_ref_trades.model.networks.generic_network', GenericNetwork=placeholder)
    model = importlib.import_module('_ref_trades.model.model')
    spec = importlib.util.spec_from_file_location('_ref_trades_opts', os.path.join(lib, 'opts.py'))
    opts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opts)
    parser = opts.opts()
    opt = parser.update_dataset_info_and_set_heads(parser.parse(OPTS), MOT)
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
        f'TraDeS model/networks/dla.py DLASeg(34, heads={opt.heads}, head_convs={opt.head_conv}, opt) built by '
        'model/model.py create_model("dla_34", opt.heads, opt.head_conv, opt=opt), opt from opts.py for '
        'experiments/mot17_train.sh (tracking on MOT, --pre_hm --ltrb_amodal --clip_len 3 --trades; --load_model '
        'set, so no base.fc). --trades: no "tracking" head (opts.py), base_model.py adds TraDeS\'s CVA/MFW modules; '
        "TraDeS's dla.py builds no pre_img_layer/pre_hm_layer (CenterTrack's does). Top-level keys besides the "
        f'trunk: {tops}.',
        describe_ida_stages(m.dla_up), 'ida_up ' + describe_ida(m.ida_up) + '.',
        "Outputs: level0..5 (DLA.forward), features = DLASeg.img2feats(x)[-1] (64 ch, stride 4). Container: "
        "model/model.py save_model -> {'epoch', 'state_dict'}.",
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'JialianW/TraDeS').parse_args()
    model_py, opt = import_reference(args.ref)

    def build():
        torch.manual_seed(0)
        return model_py.create_model('dla_34', dict(opt.heads), opt.head_conv, opt=opt).eval()

    model = build()
    ref = reference(args, 'src/lib/model/networks/dla.py', "model/model.py create_model('dla_34', opt.heads, "
                    'opt.head_conv, opt=opt); opt = opts().parse(experiments/mot17_train.sh args) + '
                    'update_dataset_info_and_set_heads(mot)')
    container = {'state_dict_key': 'state_dict', 'extra': {'epoch': 1}}
    man = manifest('trades_dla34_dcn', 'trades', ref, SEED, model.state_dict(), {'shape': INPUT, 'seed': SEED + 1},
                   container=container, notes=notes(model, opt))
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)
    roundtrip(man, lambda path: run(model_py.load_model(build(), path, opt).eval(), x), outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
