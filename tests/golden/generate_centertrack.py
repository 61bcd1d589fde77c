"""Golden fixture from xingyizhou/CenterTrack: ``model/networks/dla.py`` DLASeg with pre_img / pre_hm inputs.

    python tests/golden/generate_centertrack.py --ref /tmp/ref/CenterTrack [--commit SHA] [--out tests/golden/data]

``--ref`` is a checkout of https://github.com/xingyizhou/CenterTrack (never part of this repository). The options are
parsed by the reference's own ``opts`` with the arguments of ``experiments/coco_tracking.sh``; its DCNv2 submodule is
replaced by the stand-in of ``_refgen``; ``generic_network`` (needs an API removed from torchvision) is not built.
"""
import importlib
import importlib.util
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from golden._refgen import (  # noqa: E402
    common_args,
    dcn_module,
    describe_ida,
    describe_ida_stages,
    fake_module,
    placeholder,
    pose_fixture,
    reference,
)

# experiments/coco_tracking.sh (fine-tuned from CenterNet's ctdet_coco_dla_2x.pth, hence --load_model)
OPTS = ['tracking', '--exp_id', 'coco_tracking', '--tracking', '--load_model', '../models/ctdet_coco_dla_2x.pth',
        '--gpus', '0,1,2,3,4,5,6,7', '--batch_size', '128', '--lr', '5e-4', '--num_workers', '16', '--pre_hm',
        '--shift', '0.05', '--scale', '0.05', '--hm_disturb', '0.05', '--lost_disturb', '0.4', '--fp_disturb', '0.1']
COCO = types.SimpleNamespace(num_categories=80, default_resolution=[512, 512])  # dataset/datasets/coco.py
INPUT = [1, 3, 96, 64]


def import_reference(ref: str):
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    fake_module('_ref_centertrack', path=os.path.join(lib, 'model'))
    fake_module('_ref_centertrack.networks', path=os.path.join(lib, 'model', 'networks'))
    fake_module('_ref_centertrack.networks.DCNv2')
    dcn_module('_ref_centertrack.networks.DCNv2.dcn_v2')
    fake_module('_ref_centertrack.networks.generic_network', GenericNetwork=placeholder)
    model = importlib.import_module('_ref_centertrack.model')
    dla = sys.modules['_ref_centertrack.networks.dla']
    assert dla.DCN is not None
    spec = importlib.util.spec_from_file_location('_ref_centertrack_opts', os.path.join(lib, 'opts.py'))
    opts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(opts)
    parser = opts.opts()
    opt = parser.update_dataset_info_and_set_heads(parser.parse(OPTS), COCO)
    return model, dla, opt


def notes(m, opt) -> str:
    return ' '.join([
        f'CenterTrack model/networks/dla.py DLASeg(34, heads={opt.heads}, head_convs={opt.head_conv}, opt) built by '
        'model/model.py create_model("dla_34", opt.heads, opt.head_conv, opt=opt), with opt from the reference '
        'opts.py for experiments/coco_tracking.sh (task tracking -> pre_img on; --pre_hm; dla_node "dcn"; '
        'head_kernel 3; prior_bias -4.6 for hm; model_output_list off). --load_model is set there, so the trunk is '
        'built with pretrained=False: NO base.fc (a run from ImageNet, load_model == "", adds base.fc [1000,512,1,1] '
        'after base.pre_hm_layer; the released models had it removed by tools/remove_optimizers.py, which also '
        'drops "optimizer").',
        'Key order: HEADS FIRST (BaseModel.__init__ registers them before the trunk): hm, reg, wh, tracking, each '
        'Sequential(Conv2d(64, 256, 3, padding 1, bias), ReLU, Conv2d(256, classes, 1, bias)) -> <head>.0.*, '
        '<head>.2.*; then base.* (DLA-34, ucbdrive names, BN momentum 0.1), base.pre_img_layer.{0,1} '
        '(Conv2d(3, 16, 7, padding 3, bias False), BN(16)) and base.pre_hm_layer.{0,1} (Conv2d(1, 16, 7, padding 3, '
        'bias False), BN(16)) after level5, then dla_up.ida_0..2, then ida_up.',
        'Trunk forward (DLA.forward(x, pre_img, pre_hm)): x = base_layer(img); x = x + pre_img_layer(pre_img); '
        'x = x + pre_hm_layer(pre_hm) (each layer = conv, BN, ReLU; added AFTER the ReLU of base_layer); then '
        'level0..level5. BaseModel.forward(x, pre_img, pre_hm) uses imgpre2feats when either extra input is given.',
        'DLA-Up = CenterNet pose_dla_dcn structure with node_type = DLA_NODE[opt.dla_node] = (proj type, node type): '
        '"dcn" -> (DeformConv, DeformConv) (default, used here), "conv" -> (Conv, Conv), "gcn" -> (Conv, GlobalConv); '
        'Conv = .conv Sequential(1x1 conv no bias, BN, ReLU). DeformConv(chi, cho) = actf(conv(x)): DCN(chi, cho, '
        '3x3, stride 1, padding 1, dg 1) WITH bias, then actf = Sequential(BN(cho), ReLU); keys <m>.actf.0.*, '
        '<m>.conv.weight, <m>.conv.bias, <m>.conv.conv_offset_mask.weight [27,chi,3,3], '
        '<m>.conv.conv_offset_mask.bias [27] (DCNv2 submodule CharlesShang/DCNv2: o1, o2, mask = '
        'chunk(conv_offset_mask(x), 3, 1); offset = cat(o1, o2); mask = sigmoid(mask)). IDAUp(o, channels, up_f): '
        'i >= 1 only: proj_i = DeformConv(channels[i], o), up_i = ConvTranspose2d(o, o, 2f, stride f, padding f//2, '
        'groups o, bias False), node_i = DeformConv(o, o); in place layers[i] = node_k(up_k(proj_k(layers[i])) + '
        'layers[i-1]), k = i - startp (SUM aggregation). DLAUp(startp 2, [64,128,256,512], scales [1,2,4,8]) -> '
        '[64ch s4, 128ch s8, 256ch s16, level5]; ida_up = IDAUp(64, [64,128,256], [1,2,4]) on the first three; '
        'features = its last output (64 ch, stride 4), exactly what every head sees (img2feats/imgpre2feats '
        'return [y[-1]]).',
        describe_ida_stages(m.dla_up) + ' ida_up ' + describe_ida(m.ida_up) + '.',
        'Container: model/model.py save_model -> {"epoch", "state_dict": model(.module).state_dict()} '
        '(+ "optimizer"), no "module." prefix; load_model strips it if present and loads with strict=False after '
        'shape checks (reset_hm / reuse_hm options for hm).',
        'Inputs: image = make_input(manifest) [1,3,96,64]; pre_img and pre_hm are manifest["input"]["extra"]'
        '["pre_img"|"pre_hm"] = {"shape", "seed"}, drawn exactly like make_input: torch.randn(shape, '
        'generator=torch.Generator().manual_seed(seed)) (e.g. make_input({"input": spec})); the call is '
        'model(image, pre_img, pre_hm).',
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'xingyizhou/CenterTrack').parse_args()
    model_py, _dla, opt = import_reference(args.ref)
    heads = dict(opt.heads)

    def build():
        return model_py.create_model('dla_34', heads, opt.head_conv, opt=opt)

    def load(fresh, path):
        return model_py.load_model(fresh, path, opt)  # the reference's own loader

    ref = reference(args, 'src/lib/model/networks/dla.py',
                    "model/model.py create_model('dla_34', opt.heads, opt.head_conv, opt=opt); opt = opts().parse("
                    'experiments/coco_tracking.sh args) + update_dataset_info_and_set_heads(coco)')
    pose_fixture(args, name='centertrack_dla34_dcn', family='centertrack_dla', ref=ref, seed=4101, build=build,
                 heads=list(heads), input_shape=INPUT, notes=notes(build(), opt), load=load,
                 container={'state_dict_key': 'state_dict', 'extra': {'epoch': 1}},
                 extra_inputs={'pre_img': [1, 3, 96, 64], 'pre_hm': [1, 1, 96, 64]})


if __name__ == '__main__':
    main()
