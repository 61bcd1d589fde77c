"""Golden fixture from lzccccc/SMOKE's own DLA-34-DCN (the original SMOKE release, not mmdetection3d's port).

Runs the REAL reference code from a local checkout (never copied into this repository)::

    python tests/golden/generate_smoke.py --ref /tmp/smoke-ref --out tests/golden/data

``smoke/modeling/backbone/{backbone,dla}.py``, ``smoke/layers/deform_conv.py``, ``smoke/modeling/make_layers.py``,
``smoke/config/defaults.py`` (yacs) and ``smoke/modeling/heads/smoke_head/smoke_predictor.py`` are imported from the
checkout; only the compiled DCNv2 extension (``smoke/layers/dcn_v2.py`` needs ``smoke._ext``) is replaced by
``_refgen.DCN`` (the same parameters, ``conv_offset_mask`` chunked into (o1, o2, mask), on torchvision's op).
"""
import importlib
import os
import sys
from collections import OrderedDict

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from golden import make_input  # noqa: E402
from golden._refgen import (  # noqa: E402
    common_args,
    dcn_module,
    describe_ida_stages,
    fake_module,
    finish,
    load_synth,
    manifest,
    reference,
    roundtrip,
)

INPUT = [1, 3, 64, 96]
SEED = 5201


def import_reference(ref: str):
    root = os.path.join(os.path.abspath(ref), 'smoke')
    fake_module('smoke', path=root)  # the package __init__ files import the whole project; only these are needed
    for sub in ('layers', 'modeling', 'modeling.backbone', 'modeling.heads', 'modeling.heads.smoke_head', 'utils'):
        fake_module(f'smoke.{sub}', path=os.path.join(root, *sub.split('.')))
    fake_module('smoke._ext')
    sys.modules['smoke.layers.dcn_v2'] = dcn_module('smoke.layers.dcn_v2')
    cfg = importlib.import_module('smoke.config').cfg.clone()
    backbone = importlib.import_module('smoke.modeling.backbone.backbone')
    predictor = importlib.import_module('smoke.modeling.heads.smoke_head.smoke_predictor')
    return cfg, backbone, predictor


def build(cfg, backbone, predictor) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Module()  # KeypointDetector: backbone, then heads (SMOKEHead holds the predictor first)
    model.backbone = backbone.build_backbone(cfg)
    model.heads = nn.Module()
    model.heads.predictor = predictor.SMOKEPredictor(cfg, cfg.MODEL.BACKBONE.BACKBONE_OUT_CHANNELS)
    return model.eval()


def run(model: nn.Module, x: torch.Tensor):
    body = model.backbone.body
    caught = {}
    body.base.register_forward_hook(lambda m, i, o: caught.__setitem__('levels', [t.clone() for t in o]))
    body.dla_up.register_forward_hook(lambda m, i, o: caught.__setitem__('up', [t.clone() for t in o]))
    with torch.no_grad():
        feats = model.backbone(x)
    outs = {f'level{i}': t for i, t in enumerate(caught['levels'])}
    outs.update({f'dla_up.{i}': t for i, t in enumerate(caught['up']) if i})
    outs['features'] = feats
    return outs


def notes(model: nn.Module) -> str:
    return ' '.join([
        "SMOKE's KeypointDetector as configs/smoke_gn_vector.yaml builds it (defaults: CONV_BODY DLA-34-DCN, "
        'USE_NORMALIZATION GN, DOWN_RATIO 4, GROUP_NORM.NUM_GROUPS 32): backbone = Sequential(body=DLA(cfg)) -> keys '
        "'backbone.body.base.*' (DLABase: base_layer, level0..level5; BasicBlock norms 'norm1'/'norm2', Root norm "
        "'root.norm', Tree 'project.0/1'), 'backbone.body.dla_up.ida_<i>.{proj,up,node}_<k>.*' and "
        "'backbone.body.ida_up.*', then 'heads.predictor.*' (SMOKEPredictor: class_head, regression_head; skipped).",
        "DeformConv = DCN(3x3, bias) under 'deform_conv' (its offsets/mask in 'deform_conv.conv_offset_mask', "
        "DCNv2's chunked layout) -> 'norm' -> ReLU. IDAUp.forward: layers[i] = node(up(proj(layers[i])) + "
        "layers[i-1]) (CenterNet's sum). GroupNorm groups: make_layers.group_norm, 32 if C % 32 == 0 else 16.",
        describe_ida_stages(model.backbone.body.dla_up),
        "Outputs: level0..5 (DLABase), dla_up.1..3 (DLAUp's list after the first, which ida_up rewrites), "
        "features = DLA.forward (64 ch, stride 4, what the heads see). Container: SMOKE's Checkpointer saves "
        "{'model': state_dict} (+ optimizer, scheduler, iteration).",
    ])


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'lzccccc/SMOKE').parse_args()
    cfg, backbone, predictor = import_reference(args.ref)
    model = build(cfg, backbone, predictor)
    ref = reference(args, 'smoke/modeling/backbone/dla.py',
                    'smoke/modeling/backbone/backbone.py build_backbone(cfg) + smoke_predictor.py '
                    'SMOKEPredictor(cfg, 64), cfg = smoke.config.cfg (defaults)')
    container = {'state_dict_key': 'model', 'extra': {'iteration': 1}}
    man = manifest('smoke_dla34_dcn_gn', 'smoke', ref, SEED, model.state_dict(), {'shape': INPUT, 'seed': SEED + 1},
                   container=container, notes=notes(model))
    load_synth(model, man)
    x = make_input(man)
    outputs = run(model, x)

    def from_file(path):
        fresh = build(cfg, backbone, predictor)
        state = torch.load(path, map_location='cpu', weights_only=True)['model']
        fresh.load_state_dict(OrderedDict(state), strict=True)
        return run(fresh, x)

    roundtrip(man, from_file, outputs)
    finish(man, outputs, args.out)


if __name__ == '__main__':
    main()
