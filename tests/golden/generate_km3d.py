"""Golden fixture from Banconxuan/RTM3D (KM3D): its own ``pose_dla_dcn.py`` (a copy of CenterNet's) + KM3D's heads.

    python tests/golden/generate_km3d.py --ref /tmp/km3d-ref [--commit SHA] [--out tests/golden/data]

``--ref`` is a checkout of https://github.com/Banconxuan/RTM3D (never part of this repository). The checkpoint is
built by RTM3D's own ``models/model.py create_model('dla_34', heads, 256)`` and read back by its ``load_model``;
the compiled DCNv2 op and the ImageNet download are replaced as for CenterNet (see ``_refgen``). The key manifest
is the proof that KM3D files belong to the ``centernet`` family: the same trunk and DLA-Up keys as
``centernet_dla34_dcn``, other heads.
"""
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from golden._refgen import (  # noqa: E402
    common_args,
    create_model_fixtures,
    dcn_module,
    describe_ida,
    describe_ida_stages,
    fake_module,
    imagenet_fc_only,
)

# src/lib/opts.py update_dataset_info_and_set_heads on KITTI (3 classes) with the default reg_offset, hm_hp and
# reg_hp_offset: hm, wh, hps, rot, dim, prob, then reg, hm_hp, hp_offset
HEADS = {'hm': 3, 'wh': 2, 'hps': 18, 'rot': 8, 'dim': 3, 'prob': 1, 'reg': 2, 'hm_hp': 9, 'hp_offset': 2}
INPUT = [1, 3, 96, 64]


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib', 'models')
    fake_module('_ref_km3d', path=lib)
    fake_module('_ref_km3d.networks', path=os.path.join(lib, 'networks'))
    fake_module('_ref_km3d.networks.DCNv2')
    dcn_module('_ref_km3d.networks.DCNv2.dcn_v2')
    model = importlib.import_module('_ref_km3d.model')
    dcn = sys.modules['_ref_km3d.networks.pose_dla_dcn']
    dcn.DLA.load_pretrained_model = imagenet_fc_only
    sys.modules['_ref_km3d.networks.dlav0'].DLA.load_pretrained_model = lambda self, *a, **k: None
    return model


def notes(m) -> str:
    return ' '.join([
        "RTM3D src/lib/models/networks/pose_dla_dcn.py (byte-identical to xingyizhou/CenterNet's at 4c50fd3) "
        "get_pose_net(34, heads, head_conv=256) via models/model.py create_model('dla_34', heads, 256): base.* "
        '(DLA-34, ucbdrive names, with base.fc from DLA.load_pretrained_model), dla_up.ida_0..2, ida_up, then the '
        'KM3D heads in opts order (each Sequential(Conv2d(64, 256, 3, bias), ReLU, Conv2d(256, n, 1, bias)); '
        'hm/hm_hp biases -2.19).',
        describe_ida_stages(m.dla_up), 'ida_up ' + describe_ida(m.ida_up) + '.',
        "Container: models/model.py save_model -> {'epoch', 'state_dict'} (no 'module.' prefix).",
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'Banconxuan/RTM3D').parse_args()
    model_py = import_reference(args.ref)
    create_model_fixtures(args, model_py, HEADS, INPUT, 'src/lib/models/model.py', [
        ('km3d_dla34_dcn', 'km3d_pose_dla_dcn', 'dla_34', 'src/lib/models/networks/pose_dla_dcn.py', 5401, notes),
    ])


if __name__ == '__main__':
    main()
