"""Golden fixtures from open-mmlab/mmdetection3d's SMOKE DLA-34 backbone + DLANeck (mmengine checkpoints).

Runs the REAL reference code from a local checkout (never copied into this repository)::

    python tests/golden/generate_mmdet3d.py --ref /tmp/refb/mmdetection3d --out tests/golden/data

mmdetection3d itself need not be installed: ``mmdet3d/models/backbones/dla.py``, ``mmdet3d/models/necks/dla_neck.py``
and ``mmdet3d/models/dense_heads/anchor_free_mono3d_head.py`` are imported from the checkout with in-memory stubs for
``mmdet3d.registry`` / ``mmdet3d.utils`` (and ``mmdet`` when absent). mmcv 2.x and mmengine are required. The neck's
DCNv2 is mmcv's compiled ``ModulatedDeformConv2dPack`` when ``mmcv.ops`` loads (``--dcn auto``/``mmcv``), else a
stand-in with the same parameters (``weight``, ``bias``, ``conv_offset``) and math on
``torchvision.ops.deform_conv2d``; in ``auto`` mode both are run and compared.
"""
import argparse
import importlib.util
import os
import sys
import types
import typing
from contextlib import contextmanager

import torch
import torchvision
from torch import nn
from torch.nn.modules.utils import _pair, _single

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden import make_input, synth_state_dict  # noqa: E402
from golden._refgen import dumps_manifest, git_commit  # noqa: E402

REPO = 'open-mmlab/mmdetection3d'
H, W = 64, 96
GN = dict(type='GN', num_groups=32)
IN_CHANNELS = [16, 32, 64, 128, 256, 512]


class ModulatedDeformConv2dPackStandIn(nn.Module):
    """mmcv.ops.ModulatedDeformConv2dPack ('DCNv2'): same attributes, parameter names/order and forward math."""

    _version = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 deform_groups=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        self.groups, self.deform_groups = groups, deform_groups
        self.transposed, self.output_padding = False, _single(0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter('bias', None)
        self.conv_offset = nn.Conv2d(in_channels, deform_groups * 3 * self.kernel_size[0] * self.kernel_size[1],
                                     self.kernel_size, self.stride, self.padding, self.dilation, bias=True)
        nn.init.kaiming_uniform_(self.weight, nonlinearity='relu')

    def forward(self, x):
        out = self.conv_offset(x)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                                             padding=self.padding, dilation=self.dilation, mask=mask)


def mmcv_dcn():
    """mmcv's compiled ModulatedDeformConv2dPack if it runs on CPU here, else None."""
    try:
        from mmcv.ops import ModulatedDeformConv2dPack

        m = ModulatedDeformConv2dPack(2, 2, 3, padding=1)
        m(torch.randn(1, 2, 5, 5))
        return ModulatedDeformConv2dPack
    except Exception as e:  # no compiled ops
        print('mmcv compiled DCNv2 unavailable:', type(e).__name__, e)
        return None


@contextmanager
def dcnv2_as(cls):
    """Register ``cls`` as mmcv's conv type 'DCNv2' for the duration."""
    from mmengine.registry import MODELS

    old = MODELS._module_dict.get('DCNv2')
    MODELS.register_module('DCNv2', module=cls, force=True)
    try:
        yield
    finally:
        if old is not None:
            MODELS.register_module('DCNv2', module=old, force=True)


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__path__ = []
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def import_reference(ref):
    from mmengine.model import BaseModule
    from mmengine.registry import Registry

    _stub('mmdet3d')
    _stub('mmdet3d.registry', MODELS=Registry('mmdet3d_stub_model'), TASK_UTILS=Registry('mmdet3d_stub_task'))
    names = ['ConfigType', 'OptConfigType', 'MultiConfig', 'OptMultiConfig', 'InstanceList', 'OptInstanceList',
             'OptSampleList', 'OptSamplingResultList']
    _stub('mmdet3d.utils', **{n: typing.Any for n in names})
    for pkg in ['mmdet3d.models', 'mmdet3d.models.backbones', 'mmdet3d.models.necks', 'mmdet3d.models.dense_heads']:
        _stub(pkg)
    _stub('mmdet3d.models.dense_heads.base_mono3d_dense_head', BaseMono3DDenseHead=BaseModule)
    if importlib.util.find_spec('mmdet') is None:
        _stub('mmdet')
        _stub('mmdet.models')
        _stub('mmdet.models.utils', multi_apply=None)
    root = os.path.join(ref, 'mmdet3d', 'models')
    dla = _load('mmdet3d.models.backbones.dla', os.path.join(root, 'backbones', 'dla.py'))
    neck = _load('mmdet3d.models.necks.dla_neck', os.path.join(root, 'necks', 'dla_neck.py'))
    head = _load('mmdet3d.models.dense_heads.anchor_free_mono3d_head',
                 os.path.join(root, 'dense_heads', 'anchor_free_mono3d_head.py'))
    return dla, neck, head


def smoke_head_shell(head_mod):
    """SMOKEMono3DHead's layers, built by the reference's own AnchorFreeMono3DHead._init_layers with the attributes
    that configs/_base_/models/smoke.py gives it (the head's losses and coder are irrelevant to its weights)."""
    ref = head_mod.AnchorFreeMono3DHead
    methods = ['_init_layers', '_init_cls_convs', '_init_reg_convs', '_init_branch', '_init_predictor']
    shell = type('SMOKEMono3DHeadLayers', (nn.Module,), {m: getattr(ref, m) for m in methods})()
    attrs = dict(num_classes=3, cls_out_channels=3, in_channels=64, feat_channels=64, stacked_convs=0,
                 dcn_on_last_conv=False, conv_bias=True, conv_cfg=None,
                 norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),  # SMOKEMono3DHead's default
                 cls_branch=(256,), reg_branch=((256,),), group_reg_dims=[8], out_channels=[256],
                 dir_branch=(), attr_branch=(), use_direction_classifier=False, pred_attrs=False)
    shell.__dict__.update(attrs)
    shell._init_layers()
    return shell


def build(mods, use_dcn):
    dla, neck, head = mods
    torch.manual_seed(0)
    model = nn.Module()  # SMOKEMono3D registers backbone, neck, bbox_head in this order (no persistent buffers)
    model.backbone = dla.DLANet(depth=34, in_channels=3, norm_cfg=GN)
    model.neck = neck.DLANeck(in_channels=list(IN_CHANNELS), start_level=2, end_level=5, norm_cfg=GN,
                              use_dcn=use_dcn)
    model.bbox_head = smoke_head_shell(head)
    return model.eval()


def run(model, x):
    caught = {}
    model.neck.dla_up.register_forward_hook(lambda m, i, o: caught.__setitem__('up', [t.clone() for t in o]))
    with torch.no_grad():
        levels = model.backbone(x)
        feats = model.neck(levels)
    assert isinstance(feats, list) and len(feats) == 1
    outputs = {f'level{i}': t for i, t in enumerate(levels)}
    outputs.update({f'dla_up.{i}': t for i, t in enumerate(caught['up'])})
    outputs['features'] = feats[0]
    return outputs


_NAMING = (
    "DLANet (mmdet3d/models/backbones/dla.py, depth 34, channels 16,32,64,128,256,512, levels 1,1,1,2,2,1) key "
    "naming vs ucbdrive/timm: BasicBlock norms are 'norm1'/'norm2' (ucbdrive/timm: bn1/bn2), Root norm is "
    "'root.norm' (ucbdrive/timm: root.bn); unchanged: base_layer.{0 conv7x7 s1 p3 no-bias, 1 norm} (ReLU is index "
    "2), level0 = Sequential(conv3x3 16->16 s1, norm, ReLU) -> level0.0/level0.1, level1 = (conv3x3 16->32 s2, "
    "norm, ReLU), level2..level5 Trees with tree1/tree2/root/project; project = Sequential(1x1 conv no-bias, norm) -> "
    "project.0/project.1; root.conv is 1x1 no-bias; Tree level_root = (False, True, True, True) for level2..5; no "
    "root residual; no 'fc' key. KEY ORDER differs from ucbdrive: for a levels=1 Tree mmdet3d registers root "
    "BEFORE tree1/tree2 (order: root, tree1, tree2, project; ucbdrive/CenterNet2: tree1, tree2, root, project; "
    "timm: project, tree1, tree2, root). "
    "As in ucbdrive, level3/level4 (levels=2) carry an outer project (levelN.project.*) that the forward computes "
    "but never uses (timm drops it). Norm = GroupNorm (eps 1e-5, affine; keys weight/bias only, no running "
    "stats), groups via dla_build_norm_layer: 32 groups if C % 32 == 0 else 32 // 2 = 16 groups -> GN(16 groups, "
    "16 ch) in base_layer and level0, GN(32 groups) everywhere else (the group count is NOT recorded in the "
    "checkpoint). level0..level5 outputs = DLANet.forward tuple (strides 1,2,4,8,16,32).")


def neck_notes(use_dcn):
    if use_dcn:
        unit = ("Every proj/node is mmcv ConvModule(Cin, Cout, 3, padding=1, bias=True, conv_cfg=dict(type='DCNv2'), "
                "norm_cfg=GN(32 groups)) = conv -> gn -> ReLU, keys: X.conv.weight [Cout,Cin,3,3], X.conv.bias "
                "[Cout], X.conv.conv_offset.weight [27,Cin,3,3], X.conv.conv_offset.bias [27] (conv_offset is a CHILD "
                "of the deform conv: mmcv ModulatedDeformConv2dPack), X.gn.weight, X.gn.bias. DCN math: out = "
                "conv_offset(x) (3x3 s1 p1); o1, o2, m = chunk(out, 3, dim=1); offset = cat((o1, o2), 1) (18 ch, "
                "DCNv2 layout: channel 2k = dy, 2k+1 = dx of tap k = i*3+j, as torchvision.ops.deform_conv2d); mask "
                "= sigmoid(m); y = mdcn(x, offset, mask, weight) + bias; deform_groups 1. The conv keeps its bias "
                "although GN follows (bias=True is explicit). Key map to CenterNet2's DLASeg deform unit: "
                "X.conv.weight/bias -> X'.conv.weight/bias, X.conv.conv_offset.* -> X'.offset.* (same [27,Cin,3,3] "
                "layout and chunk order), X.gn.* -> X'.actf.0.* (BN there).")
    else:
        unit = ("use_dcn=False: every proj/node is mmcv ConvModule(Cin, Cout, 3, padding=1, bias=True, conv_cfg=None, "
                "norm_cfg=GN(32 groups)) = plain nn.Conv2d 3x3 s1 p1 WITH bias -> GroupNorm(32) -> ReLU(inplace); keys "
                "X.conv.weight [Cout,Cin,3,3], X.conv.bias [Cout], X.gn.weight, X.gn.bias (no conv_offset).")
    return (
        "DLANeck(in_channels=[16,32,64,128,256,512], start_level=2, end_level=5, norm_cfg=GN(32), use_dcn="
        f"{use_dcn}) (mmdet3d/models/necks/dla_neck.py), keys under 'neck.': neck.dla_up.ida_{{0,1,2}}.{{projs,ups,"
        "nodes}.<j>.* and neck.ida_up.{projs,ups,nodes}.<j>.* (ModuleLists, 0-based j, registration order projs, ups, "
        "nodes; CenterNet/CenterNet2 name the same modules proj_{j+1}/up_{j+1}/node_{j+1}). " + unit + " ups.<j> = "
        "ConvTranspose2d(C, C, 2f, stride f, padding f//2, groups=C, bias=False) (key ups.<j>.weight [C,1,2f,2f]). "
        "IDAUpsample(o, in_channels, kernel_sizes): for j = 0..len-2 (input i = j+1): projs.j: in_channels[i] -> o, "
        "ups.j with f = kernel_sizes[i], nodes.j: o -> o; forward(feats, s, e): for i in s..e-2: feats[i+1] = "
        "nodes.(i-s)(ups.(i-s)(projs.(i-s)(feats[i+1])) + feats[i]) -> aggregation = elementwise SUM of the upsampled "
        "projection and the previous (already aggregated) map, then node; no concat. The first input of an IDA is "
        "never projected; every other input has a proj unconditionally (no Identity for equal widths; in DLA-34 the "
        "projected widths always differ from o anyway). DLAUpsample(start_level=2, channels=[64,128,256,512], "
        "scales=[1,2,4,8]) on levels L0..L5: ida_0 = IDAUpsample(256, [256,512], [1,2]); ida_1 = IDAUpsample(128, "
        "[128,256,256], [1,2,2]); ida_2 = IDAUpsample(64, [64,128,128,128], [1,2,2,2]) - every dla_up ups.j has f=2 "
        "(kernel 4). Data flow: A4 = ida_0.nodes.0(ida_0.ups.0(ida_0.projs.0(L5)) + L4); B4 = ida_1.nodes.0(ups.0("
        "projs.0(L4)) + L3); B5 = ida_1.nodes.1(ups.1(projs.1(A4)) + B4); C3 = ida_2.nodes.0(ups.0(projs.0(L3)) + "
        "L2); C4 = ida_2.nodes.1(ups.1(projs.1(B4)) + C3); C5 = ida_2.nodes.2(ups.2(projs.2(B5)) + C4). DLAUpsample "
        "returns [C5, B5, A4, L5] = outputs dla_up.0..3 (strides 4,8,16,32; channels 64,128,256,512). Final "
        "neck.ida_up = IDAUpsample(64, [64,128,256], [1,2,4]) on clones [C5, B5, A4] (end_level=5 -> 3 maps): y1 = "
        "nodes.0(ups.0(projs.0(B5)) + C5) (ups.0 f=2, [64,1,4,4]); y2 = nodes.1(ups.1(projs.1(A4)) + y1) (ups.1 f=4, "
        "[64,1,8,8]); the neck returns [y2]. Output 'features' = y2: 64 channels at STRIDE 4 (16x24 for the 64x96 "
        "input), what SMOKEMono3DHead consumes. Same graph as CenterNet2 dla.py DLASeg's dla_up + ida_up (and "
        "CenterNet's pose_dla_dcn), but with mmcv module names (projs.j/ups.j/nodes.j = proj_{j+1}/up_{j+1}/"
        "node_{j+1}; key ORDER grouped: all projs, then all ups, then all nodes, whereas CenterNet2 interleaves "
        "proj_1, up_1, node_1, proj_2, ...) and GN instead of BN. GN in the neck is built by build_norm_layer "
        "directly (always 32 groups; all neck widths >= 64).")


def head_notes(n):
    return (f"Non-backbone keys to skip ({n}, the complete SMOKEMono3DHead of configs/_base_/models/smoke.py, built by "
            "the reference's AnchorFreeMono3DHead._init_layers): bbox_head.conv_cls_prev.0.{conv.weight [256,64,3,3], "
            "conv.bias, gn.weight, gn.bias}, bbox_head.conv_cls.{weight [3,256,1,1], bias}, "
            "bbox_head.conv_reg_prevs.0.0.{conv.weight [256,64,3,3], conv.bias, gn.weight, gn.bias}, "
            "bbox_head.conv_regs.0.{weight [8,256,1,1], bias}.")


def generate(mods, out, name, seed, use_dcn, dcn_mode, commit):
    from safetensors.torch import save_file

    real = mmcv_dcn() if use_dcn and dcn_mode in ('auto', 'mmcv') else None
    if use_dcn and dcn_mode == 'mmcv' and real is None:
        raise SystemExit('--dcn mmcv: mmcv compiled ops unavailable')
    with dcnv2_as(real or ModulatedDeformConv2dPackStandIn):
        model = build(mods, use_dcn)
    state = model.state_dict()
    tensors = [[k, list(v.shape), str(v.dtype).replace('torch.', '')] for k, v in state.items()]
    n_head = sum(k.startswith('bbox_head.') for k in state)
    counts = {p: sum(k.startswith(p + '.') for k in state) for p in ('backbone', 'neck', 'bbox_head')}
    dcn_impl = 'none (use_dcn=False)'
    if use_dcn:
        dcn_impl = 'mmcv 2.x compiled ModulatedDeformConv2dPack (CPU)' if real else \
            'torchvision.ops.deform_conv2d stand-in for mmcv ModulatedDeformConv2dPack'
    notes = (
        "Whole-detector checkpoint of mmdetection3d SMOKE (configs/smoke/smoke_dla34_dlaneck_gn-all_4xb8-6x_kitti-"
        "mono3d.py -> configs/_base_/models/smoke.py: backbone DLANet(depth=34, in_channels=3, "
        "norm_cfg=dict(type='GN', num_groups=32)), neck DLANeck(in_channels=[16,32,64,128,256,512], start_level=2, "
        "end_level=5, norm_cfg=dict(type='GN', num_groups=32))" + ("" if use_dcn else " but with use_dcn=False") + "). "
        "Container: mmengine checkpoint {'meta': {...}, 'state_dict': {...}} (real files also carry 'optimizer', "
        "'message_hub', 'param_schedulers'; the 'meta' here is a representative subset). ALL "
        f"{len(tensors)} keys of the real model are listed: backbone.* ({counts['backbone']}), neck.* "
        f"({counts['neck']}), bbox_head.* ({counts['bbox_head']}); the data_preprocessor has no persistent buffers. "
        + _NAMING + " " + neck_notes(use_dcn) + " " + head_notes(n_head) + f" Deformable implementation used to "
        f"generate: {dcn_impl}. Input fed straight to the backbone (no mean/std preprocessing).")
    manifest = {
        'name': name, 'family': 'mmdet3d_dla',
        'reference': {'repo': REPO, 'commit': commit,
                      'path': 'mmdet3d/models/backbones/dla.py, mmdet3d/models/necks/dla_neck.py',
                      'build': "DLANet(depth=34, in_channels=3, norm_cfg=dict(type='GN', num_groups=32)) + "
                               "DLANeck(in_channels=[16, 32, 64, 128, 256, 512], start_level=2, end_level=5, "
                               f"norm_cfg=dict(type='GN', num_groups=32), use_dcn={use_dcn}) + SMOKEMono3DHead "
                               "layers (configs/_base_/models/smoke.py)"},
        'seed': seed,
        'container': {'state_dict_key': 'state_dict',
                      'extra': {'meta': {'epoch': 72, 'iter': 0, 'mmengine_version': '0.10.7',
                                         'dataset_meta': {'classes': ['Pedestrian', 'Cyclist', 'Car']}}}},
        'tensors': tensors, 'input': {'shape': [1, 3, H, W], 'seed': 1000 + seed}, 'outputs': {}, 'notes': notes}
    synth = synth_state_dict(manifest)
    model.load_state_dict(synth, strict=True)
    x = make_input(manifest)
    outputs = run(model, x)
    if real is not None:  # cross-check the stand-in against the compiled op
        with dcnv2_as(ModulatedDeformConv2dPackStandIn):
            alt = build(mods, use_dcn)
        alt.load_state_dict(synth, strict=True)
        alt_out = run(alt, x)
        diff = max((outputs[k] - alt_out[k]).abs().max().item() for k in outputs)
        print(f'{name}: stand-in vs mmcv compiled DCNv2, max |diff| over outputs = {diff:.3e}')
        manifest['notes'] += f" The torchvision stand-in reproduces these outputs to max |diff| {diff:.1e}."
    outputs = {k: v.detach().float().contiguous().clone() for k, v in outputs.items()}
    manifest['outputs'] = {k: list(v.shape) for k, v in outputs.items()}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f'{name}.json'), 'w') as fh:
        fh.write(dumps_manifest(manifest))
    save_file(outputs, os.path.join(out, f'{name}.safetensors'))
    print(f'{name}: {len(tensors)} keys, outputs', manifest['outputs'])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--ref', required=True, help='checkout of github.com/open-mmlab/mmdetection3d')
    ap.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data'))
    ap.add_argument('--commit', default=None, help='reference commit (when --ref is not a git checkout)')
    ap.add_argument('--dcn', choices=['auto', 'mmcv', 'standin'], default='auto')
    ap.add_argument('--only', nargs='*', default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    commit = args.commit or git_commit(args.ref)
    mods = import_reference(args.ref)
    for name, seed, use_dcn in [('mmdet3d_smoke_dla34', 21, True), ('mmdet3d_dla34_nodcn', 22, False)]:
        if args.only is None or name in args.only:
            generate(mods, args.out, name, seed, use_dcn, args.dcn, commit)


if __name__ == '__main__':
    main()
