"""Golden fixtures from ifzhang/FairMOT: ``pose_dla_conv.py`` (no DCN) and ``pose_dla_dcn.py`` (the default arch).

    python tests/golden/generate_fairmot.py --ref /tmp/ref/FairMOT [--commit SHA] [--out tests/golden/data]

``--ref`` is a checkout of https://github.com/ifzhang/FairMOT (never part of this repository). The installed
``dcn_v2`` package it imports is replaced by the DCNv2 stand-in of ``_refgen``; networks of its model factory that
the fixtures do not build (``yolo``, ``pose_hrnet``: extra dependencies) are replaced by placeholders.
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
    placeholder,
)

# opts.py, task mot: {'hm': num_classes (1), 'wh': 4 (ltrb, default True), 'id': reid_dim (128)}, then 'reg': 2
HEADS = {'hm': 1, 'wh': 4, 'id': 128, 'reg': 2}
INPUT = [1, 3, 96, 64]


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib', 'models')
    dcn_module('dcn_v2')
    fake_module('_ref_fairmot', path=lib)
    fake_module('_ref_fairmot.networks', path=os.path.join(lib, 'networks'))
    fake_module('_ref_fairmot.yolo', get_pose_net=placeholder)
    fake_module('_ref_fairmot.networks.pose_hrnet', get_pose_net=placeholder)
    model = importlib.import_module('_ref_fairmot.model')
    conv = sys.modules['_ref_fairmot.networks.pose_dla_conv']
    dcn = sys.modules['_ref_fairmot.networks.pose_dla_dcn']
    conv.DLA.load_pretrained_model = imagenet_fc_only
    dcn.DLA.load_pretrained_model = imagenet_fc_only
    return model


COMMON = (
    'Container: models/model.py save_model -> {"epoch", "state_dict": model(.module).state_dict()} (+ "optimizer"), '
    'keys WITHOUT "module." (load_model strips it if present, skips shape mismatches, strict=False). Heads '
    '(registered after the trunk, in heads-dict order hm, wh, id, reg): <head> = Sequential(Conv2d(64, 256, 3, '
    'padding 1, bias), ReLU, Conv2d(256, classes, 1, bias)); outputs raw (hm before sigmoid, id before '
    'normalisation). base = DLA-34 trunk (ucbdrive names, BN momentum 0.1) plus base.fc [1000,512,1,1] + [1000] '
    '(get_pose_net always passes pretrained=True, whose loader builds fc; forward never uses it). '
    'Input 1x3x96x64 (non-square).'
)

STRUCTURE = (
    'DLA-Up = CenterNet pose_dla_dcn structure (SUM aggregation): IDAUp(o, channels, up_f) has for i >= 1 only '
    'proj_i = DeformConv(channels[i], o), up_i = ConvTranspose2d(o, o, 2f, stride f, padding f//2, groups o, bias '
    'False), node_i = DeformConv(o, o) (registration order proj_i, up_i, node_i) and computes in place layers[i] = '
    'node_k(up_k(proj_k(layers[i])) + layers[i-1]), k = i - startp. DLAUp(startp 2, [64,128,256,512], scales '
    '[1,2,4,8]) over all 6 levels returns [64ch s4, 128ch s8, 256ch s16, level5]; then ida_up = IDAUp(64, '
    '[64,128,256], [1,2,4]) over those first three (levels 2..4 path), features = its last output y[2] (64 ch, '
    'stride 4) = exactly the tensor every head sees.'
)


def conv_notes(m) -> str:
    return ' '.join([
        'FairMOT pose_dla_conv.DLASeg ("dlaconv_34"): get_pose_net(34, heads, head_conv=256) = DLASeg("dla34", '
        'heads, pretrained=True, down_ratio=4, final_kernel=1, last_level=5, head_conv=256). The file is '
        'pose_dla_dcn.py with one change: DeformConv.conv = nn.Conv2d(chi, cho, 3, stride 1, padding 1, bias=False) '
        'instead of DCN (the module still imports dcn_v2). DeformConv forward = actf(conv(x)): 3x3 conv WITHOUT '
        'bias -> BN(momentum 0.1) -> ReLU; keys <m>.actf.0.{weight,bias,running_mean,running_var,'
        'num_batches_tracked} then <m>.conv.weight [cho,chi,3,3] (no conv.bias, no conv_offset_mask).',
        STRUCTURE,
        describe_ida_stages(m.dla_up) + ' ida_up ' + describe_ida(m.ida_up) + '.',
        COMMON,
    ])


def dcn_notes(m) -> str:
    return ' '.join([
        'FairMOT pose_dla_dcn.DLASeg ("dla_34", the default arch of FairMOT, e.g. fairmot_dla34.pth): identical to '
        'CenterNet src/lib/models/networks/pose_dla_dcn.py except the import line (from dcn_v2 import DCN, the '
        'installed DCNv2 package, vs the vendored .DCNv2.dcn_v2) and a trailing blank line: same module '
        'tree, same key names, only the heads differ. DeformConv = actf(conv(x)) with conv = DCN(chi, cho, 3x3, '
        'stride 1, padding 1, deformable_groups 1): keys <m>.actf.0.*, <m>.conv.weight, <m>.conv.bias, '
        '<m>.conv.conv_offset_mask.weight [27,chi,3,3], <m>.conv.conv_offset_mask.bias [27]; offsets = '
        'cat(o1, o2) of chunk(conv_offset_mask(x), 3), mask = sigmoid(third chunk).',
        STRUCTURE,
        describe_ida_stages(m.dla_up) + ' ida_up ' + describe_ida(m.ida_up) + '.',
        COMMON,
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'ifzhang/FairMOT').parse_args()
    model_py = import_reference(args.ref)
    create_model_fixtures(args, model_py, HEADS, INPUT, 'src/lib/models/model.py', [
        ('fairmot_dla34_conv', 'fairmot_pose_dla_conv', 'dlaconv_34', 'src/lib/models/networks/pose_dla_conv.py',
         3101, conv_notes),
        ('fairmot_dla34_dcn', 'fairmot_pose_dla_dcn', 'dla_34', 'src/lib/models/networks/pose_dla_dcn.py', 3201,
         dcn_notes),
    ])


if __name__ == '__main__':
    main()
