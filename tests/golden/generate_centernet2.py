"""Golden fixtures from xingyizhou/CenterNet2's DLA backbones (detectron2 checkpoints).

Runs the REAL reference code from a local checkout (never copied into this repository)::

    python tests/golden/generate_centernet2.py --ref /tmp/refb/CenterNet2 --out tests/golden/data

The reference is built on CPU with three run-time patches, none of which changes a parameter name, a shape or the
math: (1) detectron2's ``ModulatedDeformConv`` (CUDA-only) is replaced by a stand-in with the same parameters
(``weight``, ``bias``) computing ``torchvision.ops.deform_conv2d`` (same offset/mask layout as the DCNv2 kernel);
(2) ``torch.utils.model_zoo.load_url`` returns a 1000-class ``fc`` only (dla.py's ``DLA`` builds its ``fc`` from
the ImageNet file), so nothing is downloaded; (3) dlafpn.py's ``DLA.load_pretrained_model`` is a no-op.
Every manifest key/shape/dtype is taken from ``model.state_dict()`` of the detector built from the config named in
``reference.build`` (keys exactly as detectron2's Checkpointer stores them under ``'model'``).
"""
import argparse
import os
import sys

import torch
import torchvision
from torch import nn
from torch.nn.modules.utils import _pair

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden import make_input, synth_state_dict  # noqa: E402
from golden._refgen import dumps_manifest, git_commit  # noqa: E402

REPO = 'xingyizhou/CenterNet2'
H, W = 64, 96

_DLA_NAMING = (
    "DLA-34 key naming = ucbdrive/dla naming (BN: bn1/bn2/root.bn; base_layer.{0 conv7x7 s1 no-bias, 1 norm}; "
    "level0/level1 = Sequential(conv3x3 no-bias, norm, ReLU) -> levelN.0.weight, levelN.1.*; level2..5 are Trees: "
    "BasicBlock tree1/tree2 (conv1, bn1, conv2, bn2), Root root.conv (1x1, no bias) + root.bn, project.0 (1x1 conv, "
    "no bias) + project.1 (norm)). Registration (= key) order inside a Tree: tree1, tree2, root, project (timm: "
    "project, tree1, tree2, root; mmdet3d: root, tree1, tree2, project). "
    "level3 and level4 (levels=2) carry an outer 'project' (levelN.project.*) that the forward computes but never "
    "uses (the inner Tree recomputes its own levelN.tree1.project); timm drops these two, ucbdrive and mmdet3d keep "
    "them. Norm = detectron2 get_norm(cfg.MODEL.DLA.NORM): 'BN' -> nn.BatchNorm2d, 'SyncBN' -> nn.SyncBatchNorm (same "
    "keys: weight, bias, running_mean, running_var, num_batches_tracked(int64, shape [])), eps 1e-5. "
    "Backbone outputs level0..level5 = the DLA's dla0..dla5 (strides 1,2,4,8,16,32; channels 16,32,64,128,256,512); "
    "input is fed directly to the DLA (no pixel_mean/pixel_std normalisation).")

_DEFORM = (
    "Deformable unit (_DeformConv in dla.py / DeformConv in dlafpn.py), keys in order: actf.0.* (norm, after the "
    "conv), offset.weight [27, Cin, 3, 3] + offset.bias [27] (a plain detectron2 Conv2d 3x3 s1 p1 with bias, a "
    "SIBLING of conv, not a child), conv.weight [Cout, Cin, 3, 3] + conv.bias [Cout] (detectron2 "
    "ModulatedDeformConv, 3x3 s1 p1, deformable_groups 1, bias=True). Math: om = offset(x); o1, o2, m = "
    "chunk(om, 3, dim=1); offset = cat((o1, o2), 1) (18 ch, DCNv2 layout: channel 2k = dy, 2k+1 = dx of kernel tap "
    "k = i*3+j, identical to torchvision.ops.deform_conv2d and to mmcv's conv_offset layout); mask = sigmoid(m); "
    "y = ReLU(norm(mdcn(x, offset, mask) + conv.bias)). Order conv(+bias) -> norm -> ReLU (actf.1).")


_DLA_UP = (
    "DLA-Up = CenterNet pose_dla_dcn style. IDAUp(o, channels, up_f) builds for i = 1..len-1 (setattr order, = key "
    "order: proj_1, up_1, node_1, proj_2, up_2, node_2, ...): proj_i = deform unit channels[i] -> o, up_i = "
    "ConvTranspose2d(o, o, 2f, stride f, padding f//2, groups=o, bias=False) with f = up_f[i] (key up_i.weight "
    "[o,1,2f,2f]; depthwise, no norm/act), node_i = deform unit o -> o. forward(layers, startp, endp): for i in "
    "startp+1..endp-1: layers[i] = node_i(up_i(proj_i(layers[i])) + layers[i-1]) -> aggregation = elementwise SUM "
    "of the upsampled projection and the previous (already aggregated) map, then node; no concat. The first input "
    "of an IDA is never projected; every other input has a proj unconditionally (no Identity for equal widths; in "
    "DLA-34 the projected widths always differ from o anyway). DLAUp(startp=2, channels=[64,128,256,512], "
    "scales=[1,2,4,8]) on levels L0..L5: ida_0 = IDAUp(256, [256,512], [1,2]); ida_1 = IDAUp(128, [128,256,256], "
    "[1,2,2]); ida_2 = IDAUp(64, [64,128,128,128], [1,2,2,2]) - every DLA-Up up_i has f=2 (kernel 4). Data flow: "
    "A4 = ida_0.node_1(ida_0.up_1(ida_0.proj_1(L5)) + L4); B4 = ida_1.node_1(up_1(proj_1(L4)) + L3); B5 = "
    "ida_1.node_2(up_2(proj_2(A4)) + B4); C3 = ida_2.node_1(up_1(proj_1(L3)) + L2); C4 = ida_2.node_2(up_2("
    "proj_2(B4)) + C3); C5 = ida_2.node_3(up_3(proj_3(B5)) + C4). DLAUp returns [C5, B5, A4, L5] = dla_up.0..3 "
    "(strides 4,8,16,32; channels 64,128,256,512). Final IDA-Up ida_up = IDAUp(64, [64,128,256], [1,2,4]) on "
    "clones y = [C5, B5, A4]: y1 = ida_up.node_1(ida_up.up_1(ida_up.proj_1(B5)) + C5) (up_1 f=2, [64,1,4,4]); "
    "y2 = ida_up.node_2(ida_up.up_2(ida_up.proj_2(A4)) + y1) (up_2 f=4, [64,1,8,8]); DLASeg returns {'dla2': y2} "
    "= 64 channels at STRIDE 4 (its 'dla0'..'dla2' names are IDA-Up slots y[0..2], not backbone levels). "
    "(ucbdrive/dla's dla_up.py differs: 1x1 conv+BN+ReLU projections on every input including the first, Identity "
    "when widths are equal, and a 3x3 node on the CONCAT [x, layer] (2o -> o).)")


class ModulatedDeformConvStandIn(nn.Module):
    """detectron2.layers.ModulatedDeformConv: same constructor, parameters and forward(x, offset, mask)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 deformable_groups=1, bias=True, norm=None, activation=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.deformable_groups = groups, deformable_groups
        self.norm, self.activation = norm, activation
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity='relu')

    def forward(self, x, offset, mask):
        x = torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, stride=_pair(self.stride),
                                          padding=_pair(self.padding), dilation=_pair(self.dilation), mask=mask)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def check_standin_against_mmcv():
    """max |stand-in - mmcv compiled modulated_deform_conv2d| on large random offsets, or None without mmcv ops."""
    try:
        from mmcv.ops import modulated_deform_conv2d
    except Exception:
        return None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 11, 13, generator=g)
    offset = 3 * torch.randn(2, 18, 11, 13, generator=g)
    mask = torch.rand(2, 9, 11, 13, generator=g)
    w = torch.randn(6, 8, 3, 3, generator=g)
    b = torch.randn(6, generator=g)
    ref = modulated_deform_conv2d(x, offset, mask, w, b, 1, 1, 1, 1, 1)
    m = ModulatedDeformConvStandIn(8, 6, 3, padding=1)
    m.load_state_dict({'weight': w, 'bias': b})
    with torch.no_grad():
        return (m(x, offset, mask) - ref).abs().max().item()


def import_reference(ref):
    import detectron2.layers as d2_layers
    import detectron2.layers.deform_conv as d2_deform
    import torch.utils.model_zoo as model_zoo

    d2_layers.ModulatedDeformConv = ModulatedDeformConvStandIn
    d2_deform.ModulatedDeformConv = ModulatedDeformConvStandIn
    model_zoo.load_url = lambda *a, **k: {'fc.weight': torch.zeros(1000, 512, 1, 1), 'fc.bias': torch.zeros(1000)}
    sys.path.insert(0, ref)
    import centernet  # noqa: F401  (registers the backbones, heads and meta-architectures)
    from centernet.modeling.backbone import bifpn, bifpn_fcos, dla, dlafpn  # noqa: F401

    dlafpn.DLA.load_pretrained_model = lambda self, *a, **k: None
    return sys.modules['centernet']


def build(ref, config, overrides=(), backbone_only=False):
    from centernet.config import add_centernet_config
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone, build_model

    cfg = get_cfg()
    add_centernet_config(cfg)
    if config:
        cfg.merge_from_file(os.path.join(ref, 'configs', config))
    cfg.merge_from_list(['MODEL.DEVICE', 'cpu', *overrides])
    torch.manual_seed(0)
    return (build_backbone(cfg) if backbone_only else build_model(cfg)).eval(), cfg


def tensor_list(state):
    return [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in state.items()]


def load_strict(module, prefix, synth, skip=()):
    sub = {k[len(prefix):]: v for k, v in synth.items() if k.startswith(prefix) and not k.startswith(tuple(skip))}
    module.load_state_dict(sub, strict=True)
    return len(sub)


def save(out, name, manifest, outputs):
    from safetensors.torch import save_file

    outputs = {k: v.detach().float().contiguous().clone() for k, v in outputs.items()}
    manifest['outputs'] = {k: list(v.shape) for k, v in outputs.items()}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f'{name}.json'), 'w') as fh:
        fh.write(dumps_manifest(manifest))
    save_file(outputs, os.path.join(out, f'{name}.safetensors'))
    print(f'{name}: {len(manifest["tensors"])} keys, outputs', manifest['outputs'])


def manifest_base(name, ref, path, build_str, seed, tensors, iteration, notes):
    return {'name': name, 'family': 'centernet2_dla',
            'reference': {'repo': REPO, 'commit': COMMIT, 'path': path, 'build': build_str},
            'seed': seed, 'container': {'state_dict_key': 'model', 'extra': {'iteration': iteration}},
            'tensors': tensors, 'input': {'shape': [1, 3, H, W], 'seed': 1000 + seed}, 'outputs': {}, 'notes': notes}


def levels_of(dla_out):
    if isinstance(dla_out, dict):
        return {f'level{i}': dla_out[f'dla{i}'] for i in range(6)}
    return {f'level{i}': t for i, t in enumerate(dla_out)}


def fx_dlaseg(ref, out, dcn_check):
    """build_dla_backbone (dla.py DLASeg): CenterNet-S4_DLA_8x, the whole checkpoint's keys."""
    name, seed, config = 'centernet2_dlaseg', 31, 'CenterNet-S4_DLA_8x.yaml'
    model, cfg = build(ref, config)
    state = model.state_dict()
    tensors = tensor_list(state)
    dla_keys = [k for k in state if k.startswith('backbone.base.')]
    up_keys = [k for k in state if k.startswith(('backbone.dla_up.', 'backbone.ida_up.'))]
    skipped = [k for k in state if not k.startswith('backbone.')]
    notes = (
        f"Whole-detector checkpoint of CenterNet2's CenterNet-S4_DLA_8x (META_ARCHITECTURE CenterNetDetector, "
        f"BACKBONE build_dla_backbone -> dla.py DLASeg(num_layers=34, out_features=['dla2'], use_dla_up=True, "
        f"ms_output=False, norm='BN')). Container: {{'model': state_dict, 'iteration': int}} (detectron2 "
        f"Checkpointer; training checkpoints also hold 'optimizer'/'scheduler', not modelled). ALL {len(tensors)} "
        f"keys of the real model are listed. DLA under 'backbone.base.' ({len(dla_keys)} keys incl. "
        f"backbone.base.fc.weight [1000,512,1,1] + fc.bias [1000]: the ImageNet 1x1-conv classifier that dla.py's "
        f"DLA creates in load_pretrained_model, registered after level5, unused in forward - map to timm/ucbdrive "
        f"'fc' or drop). DLA-Up under 'backbone.dla_up.' and final IDA-Up under 'backbone.ida_up.' "
        f"({len(up_keys)} keys). Non-backbone keys to skip ({len(skipped)}): pixel_mean [3,1,1], pixel_std [3,1,1] "
        f"(persistent buffers of CenterNetDetector) and proposal_generator.centernet_head.* (CenterNet head: "
        f"cls_tower/bbox_tower conv3x3+GN, bbox_pred, scales, cls_logits). " + _DLA_NAMING + " " + _DEFORM + " "
        + _DLA_UP + " Output 'dla2' is the map the CenterNet head consumes (same role as mmdet3d DLANeck "
        "'features'). No GN here (BN everywhere).")
    manifest = manifest_base(name, ref, 'centernet/modeling/backbone/dla.py',
                             f"configs/{config} -> detectron2 build_model(cfg) (CenterNetDetector)", seed, tensors,
                             cfg.SOLVER.MAX_ITER - 1, notes)
    synth = synth_state_dict(manifest)
    model.load_state_dict(synth, strict=True)
    bb = model.backbone
    caught = {}
    bb.base.register_forward_hook(lambda m, i, o: caught.__setitem__('levels', [t.clone() for t in o]))
    bb.dla_up.register_forward_hook(lambda m, i, o: caught.__setitem__('dla_up', [t.clone() for t in o]))
    with torch.no_grad():
        ret = bb(make_input(manifest))
    outputs = levels_of(caught['levels'])
    outputs.update({f'dla_up.{i}': t for i, t in enumerate(caught['dla_up'])})
    outputs['dla2'] = ret['dla2']
    if dcn_check is not None:
        manifest['notes'] += f" Generated with the torchvision stand-in (max |diff| vs mmcv 2.1.0 compiled " \
                             f"modulated_deform_conv2d on a random test: {dcn_check:.2e})."
    save(out, name, manifest, outputs)


def pick(state, keep_prefix, extra):
    """The DLA keys (``keep_prefix``) plus a few named non-backbone keys, in the checkpoint's order."""
    return [k for k in state if k.startswith(keep_prefix) or k in extra]


def fx_bottom_up(ref, out, name, seed, config, prefix, extra, desc):
    model, cfg = build(ref, config)
    state = model.state_dict()
    dla = model.backbone.bottom_up
    if prefix.endswith('.backbone.'):
        dla = dla.backbone
    keys = pick(state, prefix, extra)
    missing = [k for k in extra if k not in state]
    assert not missing, missing
    tensors = [t for t in tensor_list(state) if t[0] in set(keys)]
    skipped = [k for k in keys if not k.startswith(prefix)]
    notes = (desc + f" Container: {{'model': state_dict, 'iteration': int}} (detectron2 Checkpointer). The real "
             f"model has {len(state)} keys; listed here: all {len(keys) - len(skipped)} DLA keys (prefix "
             f"'{prefix}', no 'fc': dlafpn.py deletes it) plus {len(skipped)} representative non-backbone keys "
             f"with their real shapes that a converter must skip: {', '.join(skipped)}. " + _DLA_NAMING)
    manifest = manifest_base(name, ref, 'centernet/modeling/backbone/dlafpn.py',
                             f"configs/{config} -> detectron2 build_model(cfg) (GeneralizedRCNN); DLA = "
                             f"model.{prefix[:-1]}", seed, tensors, cfg.SOLVER.MAX_ITER - 1, notes)
    synth = synth_state_dict(manifest)
    n = load_strict(dla, prefix, synth)
    assert n == len(dla.state_dict())
    with torch.no_grad():
        outputs = levels_of(dla(make_input(manifest)))
    save(out, name, manifest, outputs)


def fx_dlaup_conv(ref, out):
    """build_dlaup_backbone (dlafpn.py DLAUP, node 'conv'): no shipped config; backbone only."""
    name, seed = 'centernet2_dlaup_conv', 34
    bb, cfg = build(ref, 'Base-CenterNet2.yaml', ['MODEL.BACKBONE.NAME', 'build_dlaup_backbone'], backbone_only=True)
    state = {'backbone.' + k: v for k, v in bb.state_dict().items()}
    tensors = tensor_list(state)
    notes = (
        "CenterNet2 dlafpn.py build_dlaup_backbone (no config in the repo uses it; built from Base-CenterNet2.yaml "
        "with MODEL.BACKBONE.NAME=build_dlaup_backbone and the defaults MODEL.DLA.NORM='BN', "
        "DLAUP_IN_FEATURES=['dla3','dla4','dla5'], DLAUP_NODE='conv'). Only the backbone's keys are listed, with the "
        "'backbone.' prefix a detectron2 detector gives them (heads not modelled). DLA under 'backbone.bottom_up.' "
        "(no fc); DLA-Up IDAs directly under 'backbone.' (backbone.ida_0.*, backbone.ida_1.*), NO final IDA-Up. "
        + _DLA_NAMING + " DLAUP(startp=3, channels=[128,256,512], scales=[1,2,4]) on [L3, L4, L5]: ida_0 = "
        "IDAUp(256, [256,512], [1,2]), ida_1 = IDAUp(128, [128,256,256], [1,2,2]); every proj_i/node_i is the "
        "'conv' node Conv(chi, cho) = Sequential(Conv2d 1x1 no-bias, norm, ReLU) -> keys X.conv.0.weight, "
        "X.conv.1.* (node is 1x1 too, not 3x3, and not deformable); up_i = ConvTranspose2d(o,o,4,stride 2,padding "
        "1,groups=o,bias=False), key up_i.weight [o,1,4,4]. Key order per IDA: proj_1, up_1, node_1, proj_2, ... "
        "Data flow: A4 = ida_0.node_1(ida_0.up_1(ida_0.proj_1(L5)) + L4); B4 = ida_1.node_1(ida_1.up_1("
        "ida_1.proj_1(L4)) + L3); B5 = ida_1.node_2(ida_1.up_2(ida_1.proj_2(A4)) + B4) (aggregation = SUM then "
        "node; first IDA input never projected; every other input projected unconditionally). Outputs: level0..5 "
        "(DLA) and the dict the backbone returns: dlaup3 = B5 [128, s8], dlaup4 = A4 [256, s16], dlaup5 = L5 "
        "[512, s32] (level5 itself).")
    manifest = manifest_base(name, ref, 'centernet/modeling/backbone/dlafpn.py',
                             "configs/Base-CenterNet2.yaml + MODEL.BACKBONE.NAME=build_dlaup_backbone -> "
                             "detectron2 build_backbone(cfg) (DLAUP)", seed, tensors, cfg.SOLVER.MAX_ITER - 1, notes)
    synth = synth_state_dict(manifest)
    load_strict(bb, 'backbone.', synth)
    caught = {}
    bb.bottom_up.register_forward_hook(lambda m, i, o: caught.__setitem__('levels', dict(o)))
    with torch.no_grad():
        ret = bb(make_input(manifest))
    outputs = levels_of(caught['levels'])
    outputs.update(ret)
    save(out, name, manifest, outputs)


COMMIT = None


def main():
    global COMMIT
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--ref', required=True, help='checkout of github.com/xingyizhou/CenterNet2')
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data'))
    ap.add_argument('--commit', default=None, help='reference commit (when --ref is not a git checkout)')
    ap.add_argument('--only', nargs='*', default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    COMMIT = args.commit or git_commit(args.ref)
    dcn_check = check_standin_against_mmcv()
    print('stand-in vs mmcv modulated_deform_conv2d max |diff|:', dcn_check)
    import_reference(args.ref)
    todo = {
        'centernet2_dlaseg': lambda: fx_dlaseg(args.ref, args.out, dcn_check),
        'centernet2_dla_bifpn': lambda: fx_bottom_up(
            args.ref, args.out, 'centernet2_dla_bifpn', 32, 'CenterNet2_DLA-BiFPN-P5_640_16x.yaml',
            'backbone.bottom_up.',
            ['backbone.resample.3.conv.conv.weight', 'backbone.resample.3.conv.bn.weight',
             'backbone.cell.0.fnode.0.combine.edge_weights', 'proposal_generator.centernet_head.agn_hm.weight',
             'proposal_generator.centernet_head.agn_hm.bias', 'roi_heads.box_predictor.0.cls_score.weight',
             'roi_heads.box_predictor.0.bbox_pred.bias'],
            "CenterNet2's CenterNet2_DLA-BiFPN-P5_640_16x (GeneralizedRCNN, BACKBONE build_p37_dla_bifpn_backbone: "
            "bifpn.py BiFPN(bottom_up=dlafpn.dla34(cfg), in_features dla3..5, 160 ch, 5 levels, 3 cells), "
            "MODEL.DLA.NORM 'BN'). The DLA is dlafpn.py's DLA (a detectron2 Backbone returning {'dla0'..'dla5'}), "
            "stored as model.backbone.bottom_up -> keys 'backbone.bottom_up.<dla key>'. The same layout is used by "
            "build_dla_fpn3_backbone / build_dla_fpn5_backbone (detectron2 FPN: bottom_up) and "
            "build_dlaup_backbone."),
        'centernet2_dla_fcos_bifpn': lambda: fx_bottom_up(
            args.ref, args.out, 'centernet2_dla_fcos_bifpn', 33, 'CenterNet2_DLA-fcosBiFPN-P5_640_16x_ST.yaml',
            'backbone.bottom_up.backbone.',
            ['backbone.bottom_up.dla6.reduction.weight', 'backbone.bottom_up.dla6.reduction.norm.weight',
             'backbone.bottom_up.dla6.reduction.norm.bias', 'backbone.repeated_bifpn.0.weights_f3_3_4',
             'proposal_generator.centernet_head.agn_hm.weight', 'proposal_generator.centernet_head.agn_hm.bias',
             'roi_heads.box_predictor.0.cls_score.weight', 'roi_heads.box_predictor.0.bbox_pred.bias'],
            "CenterNet2's CenterNet2_DLA-fcosBiFPN-P5_640_16x_ST (GeneralizedRCNN, BACKBONE "
            "build_p37_fcos_dla_bifpn_backbone: bifpn_fcos.py BiFPN, whose self.bottom_up = "
            "BackboneWithTopLevels(dlafpn.dla34(cfg), 160, num_top_levels=2, 'GN') and BackboneWithTopLevels keeps "
            "the DLA as self.backbone -> keys 'backbone.bottom_up.backbone.<dla key>'; MODEL.DLA.NORM 'BN'). "
            "TRAP: 'backbone.bottom_up.dla6.*' (FeatureMapResampler 1x1 conv 512->160 + GN, the p6 top level) sits "
            "under 'backbone.bottom_up.' but is NOT part of the DLA (dla7 has no weights: 160->160 needs no "
            "reduction). CenterNet2_DLA-BiFPN-P3_4x / P3_24x (build_p35_fcos_dla_bifpn_backbone, DLA.NORM "
            "'SyncBN') use the identical 'backbone.bottom_up.backbone.' DLA layout and keys (nn.SyncBatchNorm has "
            "the BN keys) without dla6."),
        'centernet2_dlaup_conv': lambda: fx_dlaup_conv(args.ref, args.out),
    }
    for name, fn in todo.items():
        if args.only is None or name in args.only:
            fn()


if __name__ == '__main__':
    main()
