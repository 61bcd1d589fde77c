"""Golden fixtures of CenterNet's "ctdet" pieces (xingyizhou/CenterNet): decoder, training targets, losses, heads.

    python tests/golden/generate_ctdet.py --ref /tmp/centernet-ref [--commit SHA] [--out tests/golden/data/ctdet]

``--ref`` is a checkout of https://github.com/xingyizhou/CenterNet (never part of this repository). Its ``src/lib``
goes on ``sys.path`` and its own modules run: ``models/decode.py`` ``ctdet_decode``, ``trains/ctdet.py``
``CtdetLoss`` (with ``models/losses.py`` ``FocalLoss``/``RegL1Loss``), ``datasets/sample/ctdet.py``
``CTDetDataset.__getitem__`` (with ``utils/image.py``) and the head code of ``models/networks/pose_dla_dcn.py``
``DLASeg.__init__``/``forward``. Stand-ins only where the reference needs what these pieces never use: numba's
oracle maps and the training loop's progress bar (``placeholder``), the compiled DCNv2 (``_refgen``'s stand-in, never
built here), and the DLA trunk/DLA-Up of ``DLASeg`` (parameter-free pass-throughs, so the heads see given features).
Each fixture is ``<name>.json`` (what was run, seeds, inputs) + ``<name>.safetensors`` (the reference's outputs).
"""
import importlib
import json
import os
import sys
import tempfile
import types
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from golden import make_input, seeded_maps, synth_state_dict  # noqa: E402
from golden._refgen import (  # noqa: E402
    HERE,
    common_args,
    dcn_module,
    fake_module,
    manifest,
    placeholder,
    reference,
    tensor_list,
)

HEADS = {'hm': 3, 'wh': 2, 'reg': 2}
MAX_OBJS = 8  # CTDetDataset's max_objs (COCO: 128); small keeps the fixture small
CAT_IDS = {1: 0, 2: 1, 3: 2}  # COCO category id -> class index, as CTDetDataset.cat_ids
# Two images (height, width) and their COCO annotations [x, y, w, h] in image pixels. Image "a": two overlapping
# boxes of class 0, one running past the right/bottom border (clipped), a small and a tiny one, and one entirely left
# of the image (zero width after clipping: its slot stays empty).
IMAGES = {
    'a': ((128, 160), [(1, [20.3, 30.7, 50.2, 40.9]), (1, [40.1, 40.3, 45.5, 38.2]), (2, [130.4, 90.2, 40.0, 50.0]),
                       (3, [5.5, 100.1, 6.3, 5.2]), (2, [-30.0, 10.0, 20.0, 20.0]), (3, [70.6, 55.0, 3.0, 2.0])]),
    'b': ((96, 96), [(3, [10.0, 10.0, 60.0, 40.0]), (1, [50.5, 20.25, 30.0, 70.0])]),
}
INPUT_HW = 128  # opt.input_h = opt.input_w; down_ratio 4 -> 32 x 32 output
DECODE_CASES = {  # name -> seeded_maps spec, K, whether reg is given
    'decode_random': ({'seed': 11, 'shape': [2, 3, 32, 32]}, 100, True),
    'decode_plateaus': ({'seed': 12, 'shape': [2, 3, 32, 32], 'plateaus': True}, 100, True),
    'decode_no_reg_nonsquare': ({'seed': 13, 'shape': [2, 3, 24, 40]}, 20, False),
}
# hm_scale 20 puts logits past +-9.2 (both clamps act); with seed 33 centres have logits -23.5 and 35.3.
LOSS_SPEC = {'seed': 33, 'shape': [2, 3, 32, 32], 'hm_scale': 20.0}
LOSS_WEIGHTS = {'default': (1.0, 0.1, 1.0), 'other': (0.5, 0.3, 2.0)}  # (hm, wh, off); default = opts.py
RADIUS_SIZES = [(1, 1), (2, 3), (3, 50), (50, 3), (7, 9), (31, 17), (100, 120)]  # (height, width)
RADIUS_OVERLAPS = [0.1, 0.3, 0.5, 0.7, 0.9]
HEAD_CASES = {  # name -> (head_conv, final_kernel, init seed); features are 16 channels
    'heads_conv8_k1': (8, 1, 41),
    'heads_plain_k3': (0, 3, 42),
}


def import_reference(ref: str) -> Dict[str, types.ModuleType]:
    lib = os.path.join(os.path.abspath(ref), 'src', 'lib')
    sys.path.insert(0, lib)
    fake_module('utils.oracle_utils', gen_oracle_map=placeholder)  # numba; used by eval_oracle_* only
    fake_module('trains.base_trainer', BaseTrainer=object)  # progress bar + training loop; not used by CtdetLoss
    fake_module('models.networks.DCNv2')
    dcn_module('models.networks.DCNv2.dcn_v2')
    names = ['models.decode', 'models.utils', 'trains.ctdet', 'datasets.sample.ctdet', 'utils.image',
             'models.networks.pose_dla_dcn']
    return {n: importlib.import_module(n) for n in names}


def save(out: str, name: str, meta: Dict[str, Any], tensors: Dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name + '.json'), 'w') as f:
        json.dump(meta, f, indent=1)
        f.write('\n')
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, name + '.safetensors'))
    print(f'{name}: ' + ', '.join(f'{k}{tuple(v.shape)}' for k, v in tensors.items()))


def decode_fixtures(args, ref: Dict[str, types.ModuleType]) -> None:
    for name, (spec, k, with_reg) in DECODE_CASES.items():
        maps = seeded_maps(spec)
        hm = maps['hm'].clone().sigmoid_()  # what detectors/ctdet.py process() does before decoding
        dets = ref['models.decode'].ctdet_decode(hm, maps['wh'], reg=maps['reg'] if with_reg else None, K=k)
        meta = {'name': name, 'reference': reference(args, 'src/lib/models/decode.py', 'ctdet_decode(hm.sigmoid_(), '
                                                     'wh, reg, cat_spec_wh=False, K)'),
                'maps': spec, 'K': k, 'reg': with_reg,
                'notes': 'maps = tests/golden seeded_maps(maps); detections [B, K, 6] = x1, y1, x2, y2 (output '
                         'stride), score, class (float).'}
        save(args.out, name, meta, {'detections': dets})


def radius_fixture(args, ref: Dict[str, types.ModuleType]) -> None:
    radius = ref['utils.image'].gaussian_radius
    table = [[float(radius(size, min_overlap=o)) for o in RADIUS_OVERLAPS] for size in RADIUS_SIZES]
    meta = {'name': 'gaussian_radius', 'reference': reference(args, 'src/lib/utils/image.py',
                                                              'gaussian_radius(size, min_overlap)'),
            'sizes': RADIUS_SIZES, 'min_overlaps': RADIUS_OVERLAPS, 'notes': 'radius[i, j] = gaussian_radius('
                                                                             'sizes[i], min_overlaps[j]), float64.'}
    save(args.out, 'gaussian_radius', meta, {'radius': torch.tensor(table, dtype=torch.float64)})


class _Image:
    """What ``CTDetDataset.__getitem__`` reads from ``self`` (split 'val': no random crop, flip or colour)."""

    split = 'val'
    max_objs = MAX_OBJS
    num_classes = len(CAT_IDS)
    cat_ids = CAT_IDS
    mean = np.array([0.408, 0.447, 0.470], np.float32).reshape(1, 1, 3)
    std = np.array([0.289, 0.274, 0.278], np.float32).reshape(1, 1, 3)
    opt = types.SimpleNamespace(keep_res=False, input_h=INPUT_HW, input_w=INPUT_HW, down_ratio=4, mse_loss=False,
                                dense_wh=False, cat_spec_wh=False, reg_offset=True, debug=0)

    def __init__(self, folder: str, anns: List[Any]):
        self.img_dir, self.images = folder, [1]
        coco = types.SimpleNamespace()
        coco.loadImgs = lambda ids: [{'file_name': 'img.png'}]
        coco.getAnnIds = lambda imgIds: list(range(len(anns)))
        coco.loadAnns = lambda ids: [{'category_id': c, 'bbox': list(b)} for c, b in anns]
        self.coco = coco


def run_dataset(ref: Dict[str, types.ModuleType], size, anns, image_type: Optional[type] = None,
                pixels: Optional[np.ndarray] = None) -> Dict[str, torch.Tensor]:
    """``CTDetDataset.__getitem__`` on a blank image of ``size`` (or on the uint8 BGR ``pixels``, whose ``input`` is
    then returned too) with ``anns``, ``self`` being an ``image_type`` (default :class:`_Image`); the boxes it maps
    into the output (its ``affine_transform`` results, as the float32 it stores them in) are recorded as ``boxes``."""
    import cv2

    sample = ref['datasets.sample.ctdet']
    real, corners = sample.affine_transform, []

    def recording(pt, t):
        out = real(pt, t)
        corners.append(out.astype(np.float32))
        return out

    with tempfile.TemporaryDirectory() as tmp:
        cv2.imwrite(os.path.join(tmp, 'img.png'), np.zeros((*size, 3), np.uint8) if pixels is None else pixels)
        image = type('Image', (image_type or _Image, sample.CTDetDataset), {})(tmp, anns)
        sample.affine_transform = recording
        try:
            ret = sample.CTDetDataset.__getitem__(image, 0)
        finally:
            sample.affine_transform = real
    boxes = np.concatenate([np.stack(corners[0::2]), np.stack(corners[1::2])], axis=1)
    keys = ('hm', 'wh', 'reg', 'ind', 'reg_mask') + (() if pixels is None else ('input',))
    out = {k: torch.from_numpy(np.asarray(ret[k])) for k in keys}
    out['boxes'] = torch.from_numpy(boxes)
    out['classes'] = torch.tensor([image.cat_ids[c] for c, _ in anns], dtype=torch.int64)
    return out


def target_fixtures(args, ref: Dict[str, types.ModuleType]) -> Dict[str, Dict[str, torch.Tensor]]:
    targets = {}
    for key, (size, anns) in IMAGES.items():
        targets[key] = run_dataset(ref, size, anns)
        meta = {'name': f'targets_{key}',
                'reference': reference(args, 'src/lib/datasets/sample/ctdet.py', 'CTDetDataset.__getitem__ (split '
                                       'val) with utils/image.py gaussian_radius, draw_umich_gaussian'),
                'image_hw': list(size), 'input_hw': [INPUT_HW, INPUT_HW], 'output_hw': [INPUT_HW // 4] * 2,
                'max_objs': MAX_OBJS, 'num_classes': len(CAT_IDS), 'cat_ids': CAT_IDS, 'annotations': anns,
                'notes': 'boxes = the reference affine_transform results for each annotation (x1, y1, x2, y2 in '
                         'output coordinates, float32, before clipping); classes = cat_ids[category_id]; hm, wh, '
                         'reg, ind, reg_mask = what __getitem__ returned.'}
        save(args.out, f'targets_{key}', meta, targets[key])
    return targets


def loss_fixture(args, ref: Dict[str, types.ModuleType], targets: Dict[str, Dict[str, torch.Tensor]]) -> None:
    maps = seeded_maps(LOSS_SPEC)
    batch = {k: torch.stack([targets[i][k] for i in IMAGES]) for k in ('hm', 'wh', 'reg', 'ind', 'reg_mask')}
    out: Dict[str, torch.Tensor] = {}
    for tag, (hm_w, wh_w, off_w) in LOSS_WEIGHTS.items():
        opt = types.SimpleNamespace(mse_loss=False, reg_loss='l1', dense_wh=False, norm_wh=False, cat_spec_wh=False,
                                    num_stacks=1, eval_oracle_hm=False, eval_oracle_wh=False,
                                    eval_oracle_offset=False, reg_offset=True, hm_weight=hm_w, wh_weight=wh_w,
                                    off_weight=off_w)
        loss, stats = ref['trains.ctdet'].CtdetLoss(opt)([{k: v.clone() for k, v in maps.items()}], batch)
        out.update({f'{tag}.{k}': v.detach().reshape(()) for k, v in stats.items()})
        assert torch.equal(loss, stats['loss'])
    focal = ref['trains.ctdet'].FocalLoss()
    pred = ref['models.utils']._sigmoid(maps['hm'].clone())
    out['focal_no_centre'] = focal(pred, torch.zeros_like(pred)).reshape(())
    meta = {'name': 'losses', 'reference': reference(args, 'src/lib/trains/ctdet.py', 'CtdetLoss(opt)([outputs], '
                                                     'batch) with FocalLoss, RegL1Loss (opt.reg_loss l1)'),
            'maps': LOSS_SPEC, 'weights': LOSS_WEIGHTS, 'batch': [f'targets_{k}' for k in IMAGES],
            'notes': 'outputs = seeded_maps(maps) (raw: hm logits); batch = the targets fixtures stacked in that '
                     'order; "<weights>.<stat>" = CtdetLoss loss_stats; focal_no_centre = FocalLoss()(_sigmoid(hm), '
                     'zeros) (no centre: the negative term alone).'}
    save(args.out, 'losses', meta, out)


class _PassThrough(nn.Module):
    """Stands in for DLASeg's trunk, DLA-Up and IDA-Up: no parameters, no random draws, features go through."""

    channels = [16] * 6

    def __init__(self, *_args: Any, **_kwargs: Any):
        super().__init__()

    def forward(self, x, *_args: Any):
        return [x] * 6 if torch.is_tensor(x) else x


def head_fixtures(args, ref: Dict[str, types.ModuleType]) -> None:
    net = ref['models.networks.pose_dla_dcn']
    saved = net.DLAUp, net.IDAUp
    net.DLAUp = net.IDAUp = net._golden_trunk = _PassThrough
    try:
        for name, (head_conv, final_kernel, seed) in HEAD_CASES.items():
            torch.manual_seed(seed)
            model = net.DLASeg('_golden_trunk', dict(HEADS), pretrained=False, down_ratio=4,
                               final_kernel=final_kernel, last_level=5, head_conv=head_conv)
            init = {f'init.{k}': v.clone() for k, v in model.state_dict().items()}
            build = (f'torch.manual_seed({seed}); DLASeg(base, {HEADS}, pretrained=False, down_ratio=4, '
                     f'final_kernel={final_kernel}, last_level=5, head_conv={head_conv}) with 16-channel features')
            man = manifest(name, 'centernet_heads', reference(args, 'src/lib/models/networks/pose_dla_dcn.py', build),
                           seed + 100, model.state_dict(), {'shape': [2, 16, 12, 10], 'seed': seed + 200},
                           notes='init.<key> = the state_dict right after construction; then the weights of '
                                 'synth_state_dict(manifest) are loaded and <head> = forward(make_input(manifest)).')
            man['head_conv'], man['final_kernel'], man['init_seed'], man['heads'] = head_conv, final_kernel, seed, HEADS
            model.load_state_dict(synth_state_dict(man), strict=True)
            with torch.no_grad():
                outs = model(make_input(man))[-1]
            assert tensor_list(model.state_dict()) == man['tensors']
            save(args.out, name, man, {**init, **outs})
    finally:
        net.DLAUp, net.IDAUp = saved


def main() -> None:
    parser = common_args(__doc__.splitlines()[0], 'xingyizhou/CenterNet')
    parser.set_defaults(out=os.path.join(HERE, 'data', 'ctdet'))
    args = parser.parse_args()
    ref = import_reference(args.ref)
    decode_fixtures(args, ref)
    radius_fixture(args, ref)
    targets = target_fixtures(args, ref)
    loss_fixture(args, ref, targets)
    head_fixtures(args, ref)


if __name__ == '__main__':
    main()
