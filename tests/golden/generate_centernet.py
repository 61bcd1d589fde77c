"""Golden fixtures from xingyizhou/CenterNet: ``pose_dla_dcn.py`` (DLA-34 + DCN DLA-Up) and ``dlav0.py``.

    python tests/golden/generate_centernet.py --ref /tmp/ref/CenterNet [--commit SHA] [--out tests/golden/data]

``--ref`` is a checkout of https://github.com/xingyizhou/CenterNet (never part of this repository). The compiled
DCNv2 op is replaced by the stand-in of ``_refgen`` (same parameter names and math); the ImageNet download of
``get_pose_net(pretrained=True)`` is replaced by its effect on the module tree (``base.fc``), see ``_refgen``.
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

HEADS = {'hm': 80, 'wh': 2, 'reg': 2}  # opts.py, task ctdet on COCO: hm, wh, then reg (reg_offset)
INPUT = [1, 3, 96, 64]  # non-square; levels 96x64 .. 3x2

CONTAINER_NOTE = (
    'Container: models/model.py save_model -> torch.save({"epoch": int, "state_dict": sd} (+ "optimizer" for '
    'model_last.pth)) where sd = model.module.state_dict() for DataParallel, so keys carry NO "module." prefix; '
    'load_model strips a leading "module" (7 chars) anyway, skips shape-mismatched tensors and loads with '
    'strict=False. Every BatchNorm has num_batches_tracked (trained with torch 0.4.1+).'
)

HEAD_NOTE = (
    'Heads (registered after the trunk, in heads-dict order): <head> = Sequential(Conv2d(64, 256, 3, padding 1, '
    'bias), ReLU, Conv2d(256, classes, 1, bias)) -> keys <head>.0.weight/bias, <head>.2.weight/bias; outputs are '
    'raw (hm before sigmoid; the hm bias is filled with -2.19 at init).'
)

TRUNK_NOTE = (
    'base = DLA-34 trunk with the ucbdrive module names (base_layer.0/1, level0, level1, level2..5 Trees with '
    'tree1/tree2/root/project, BasicBlock conv1/bn1/conv2/bn2), BN momentum 0.1, plus base.fc.weight '
    '[1000,512,1,1] / base.fc.bias [1000] (DLA.load_pretrained_model builds fc before loading the ImageNet '
    'dla34-ba72cf86.pth, so detectors trained from ImageNet save it; forward never uses it).'
)


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib', 'models')
    fake_module('_ref_centernet', path=lib)
    fake_module('_ref_centernet.networks', path=os.path.join(lib, 'networks'))
    fake_module('_ref_centernet.networks.DCNv2')
    dcn_module('_ref_centernet.networks.DCNv2.dcn_v2')
    model = importlib.import_module('_ref_centernet.model')  # imports every network of the model factory
    dcn = sys.modules['_ref_centernet.networks.pose_dla_dcn']
    v0 = sys.modules['_ref_centernet.networks.dlav0']
    dcn.DLA.load_pretrained_model = imagenet_fc_only
    # dlav0's loader restores its own fc after loading the file: no effect on the module tree.
    v0.DLA.load_pretrained_model = lambda self, *a, **k: None
    return model, dcn, v0


def dcn_notes(m) -> str:
    return ' '.join([
        'CenterNet pose_dla_dcn.DLASeg = get_pose_net(34, heads, head_conv=256) = DLASeg("dla34", heads, '
        'pretrained=True, down_ratio=4, final_kernel=1, last_level=5, head_conv=256); built through '
        'models/model.py create_model("dla_34", heads, 256). Key order: base.* (incl. base.fc), dla_up.ida_0..2, '
        'ida_up, hm, wh, reg.',
        TRUNK_NOTE,
        'DeformConv(chi, cho): actf = Sequential(BatchNorm2d(cho, momentum 0.1), ReLU) and conv = DCN(chi, cho, '
        'kernel 3, stride 1, padding 1, dilation 1, deformable_groups 1); forward = actf(conv(x)), i.e. DCN (WITH '
        'bias) -> BN -> ReLU. Keys (actf registered first): <m>.actf.0.{weight,bias,running_mean,running_var,'
        'num_batches_tracked}, <m>.conv.weight [cho,chi,3,3], <m>.conv.bias [cho], <m>.conv.conv_offset_mask.weight '
        '[27,chi,3,3], <m>.conv.conv_offset_mask.bias [27]. DCN math (DCNv2 dcn_v2.py): out = conv_offset_mask(x) '
        '(3x3, stride 1, padding 1); o1, o2, mask = chunk(out, 3, dim=1); offset = cat(o1, o2) (18 ch, (dy, dx) per '
        'tap, tap-major = torchvision.ops.deform_conv2d layout); mask = sigmoid(mask); modulated deformable conv '
        'with weight and bias (stand-in: torchvision.ops.deform_conv2d(x, offset, weight, bias, 1, 1, 1, mask)).',
        'IDAUp(o, channels, up_f) (CenterNet flavour, SUM aggregation): only for i = 1..len(channels)-1 (no proj_0, '
        'up_0, node_0): proj_i = DeformConv(channels[i], o) (always, even when channels[i] == o), up_i = '
        'ConvTranspose2d(o, o, 2f, stride f, padding f//2, output_padding 0, groups o, bias False) with f = '
        'up_f[i] (bilinear fill at init; a stored, trainable parameter), node_i = DeformConv(o, o); registration '
        'order proj_i, up_i, node_i. forward(layers, startp, endp) rewrites the list IN PLACE: for i in '
        'startp+1..endp-1: layers[i] = up_k(proj_k(layers[i])); layers[i] = node_k(layers[i] + layers[i-1]) with '
        'k = i - startp. So each node sees the SUM of the upsampled projection and the previous '
        '(already aggregated) layer; no concat, no 1x1 convs.',
        'DLAUp(startp=2, channels [64,128,256,512], scales [1,2,4,8]) takes all 6 levels; ida_i runs with startp = '
        '6-i-2, endp = 6: ida_0 rewrites layers[5], ida_1 layers[4..5], ida_2 layers[3..5]; out = [layers[5] after '
        'ida_2 (64 ch, stride 4), after ida_1 (128, s8), after ida_0 (256, s16), level5 (512, s32)]. '
        + describe_ida_stages(m.dla_up)
        + ' Final ida_up = IDAUp(64, [64,128,256], [1,2,4]) '
        + describe_ida(m.ida_up)
        + ' on y = [out[0], out[1], out[2]] (clones): y[1] = node_1(up_1(proj_1(y[1])) + y[0]) (x2), y[2] = '
        'node_2(up_2(proj_2(y[2])) + y[1]) (x4: ConvTranspose2d kernel 8, stride 4, padding 2). features = y[-1] '
        '= y[2]: 64 channels at stride 4 (levels 2,3,4 feed the final IDA-Up); it is exactly the tensor given to '
        'every head.',
        HEAD_NOTE,
        CONTAINER_NOTE,
        'Input 1x3x96x64 (non-square).',
    ])


def v0_notes(m) -> str:
    return ' '.join([
        'CenterNet dlav0.DLASeg = get_pose_net(34, heads, head_conv=256) = DLASeg("dla34", heads, pretrained=True, '
        'down_ratio=4, head_conv=256) ("dlav0_34" in create_model). Key order: base.* (incl. base.fc), '
        'dla_up.ida_0..2, hm, wh, reg.',
        'base = dlav0.dla34(return_levels=True): ucbdrive module names, default BN momentum, and its own '
        'base.fc [1000,512,1,1] (always built in DLA.__init__).',
        'DLAUp/IDAUp are the ucbdrive dla_up.py ones (CONCAT aggregation): DLAUp(channels [64,128,256,512], scales '
        '[1,2,4,8]) on levels 2..5 (first_level 2), 3 stages ida_0..ida_2; IDAUp(node_kernel 3, out_dim, channels, '
        'up_factors) has, for every input j including j=0: proj_j = Identity if channels[j] == out_dim else '
        'Sequential(1x1 conv no bias, BN, ReLU) (keys proj_j.0/.1), up_j = Identity if factor 1 else '
        'ConvTranspose2d(out_dim, out_dim, 2f, stride f, padding f//2, groups out_dim, bias False); registration '
        'order proj_0, up_0, proj_1, up_1, ..., then node_1..node_{n-1} = Sequential(3x3 conv 2*out_dim->out_dim '
        'no bias, BN, ReLU); x = layers[0]; x = node_j(cat([x, layers[j]], 1)); the stage returns (x, all node '
        'outputs) and DLAUp sets layers[-i-1:] = those outputs. '
        + describe_ida_stages(m.dla_up)
        + ' No final IDA-Up: features = DLAUp output = the last node of ida_2 (64 channels, stride 4), the tensor '
        'given to every head.',
        HEAD_NOTE,
        CONTAINER_NOTE,
        'Input 1x3x96x64 (non-square).',
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'xingyizhou/CenterNet').parse_args()
    model_py, dcn, v0 = import_reference(args.ref)
    create_model_fixtures(args, model_py, HEADS, INPUT, 'models/model.py', [
        ('centernet_dla34_dcn', 'centernet_pose_dla_dcn', 'dla_34', 'src/lib/models/networks/pose_dla_dcn.py', 2101,
         dcn_notes),
        ('centernet_dla34_v0', 'centernet_dlav0', 'dlav0_34', 'src/lib/models/networks/dlav0.py', 2201, v0_notes),
    ])


if __name__ == '__main__':
    main()
