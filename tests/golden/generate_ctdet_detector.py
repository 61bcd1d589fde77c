"""Golden fixtures of CenterNet's ctdet detector end to end (xingyizhou/CenterNet): detections and training loss.

    python tests/golden/generate_ctdet_detector.py --ref /tmp/centernet-ref [--commit SHA] \
        [--out tests/golden/data/ctdet]

``--ref`` is a checkout of https://github.com/xingyizhou/CenterNet (never part of this repository). Its ``src/lib``
goes on ``sys.path`` (as in ``generate_ctdet.py``) and its own code runs: ``opts.py`` parses the options,
``detectors/ctdet.py`` ``CtdetDetector(opt).run(image)`` (``create_model`` + ``load_model`` of a CenterNet-format
checkpoint, ``pre_process``, ``process``, ``post_process``, ``merge_outputs``) and, for training,
``datasets/sample/ctdet.py`` ``CTDetDataset.__getitem__`` (split 'train', randomness off) and ``trains/ctdet.py``
``CtdetLoss``. The checkpoints are the seeded ones of ``data/centernet_dla34_dcn.json`` and
``data/centernet_dla34_v0.json`` (``write_checkpoint``), so no weights are stored. Stand-ins only for what these runs
never compute with: the compiled DCNv2 (``_refgen``'s stand-in, same parameter names and math), ``external.nms``
(soft-NMS, called only for several test scales or ``--nms``), ``progress.bar`` (the training loop's progress bar),
numba's oracle maps, the ImageNet download of ``DLA.load_pretrained_model`` (its effect on the module tree kept,
see ``_refgen.imagenet_fc_only``) and ``torch.cuda.synchronize`` (a no-op on this CPU run: timing only).
"""
import contextlib
import importlib
import io
import os
import sys
import types
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from golden import load_manifest, synth_state_dict, write_checkpoint  # noqa: E402
from golden._refgen import HERE, common_args, fake_module, imagenet_fc_only, placeholder, reference  # noqa: E402
from golden.generate_ctdet import _Image, run_dataset, save  # noqa: E402
from golden.generate_ctdet import import_reference as import_ctdet_pieces  # noqa: E402

MODELS = {'dla34_dcn': ('centernet_dla34_dcn', 'dla_34'), 'dlav0': ('centernet_dla34_v0', 'dlav0_34')}
IMAGES = {'a': ((150, 200), 2601), 'b': ((190, 140), 2602)}  # name -> ((height, width), seed)
INPUT_RES = 256  # --input_res: fix_res input 256 x 256 (output 64 x 64); CenterNet's COCO default is 512
K = 100
SAMPLES = 2048  # hm values recorded at this many seeded positions per case
CASES = {  # fixture -> (model, extra options)
    'detector_dla34_dcn_fix': ('dla34_dcn', []),
    'detector_dla34_dcn_keep': ('dla34_dcn', ['--keep_res']),
    'detector_dla34_dcn_fix_flip': ('dla34_dcn', ['--flip_test']),
    'detector_dla34_dcn_keep_flip': ('dla34_dcn', ['--keep_res', '--flip_test']),
    'detector_dlav0_fix': ('dlav0', []),
    'detector_dlav0_keep': ('dlav0', ['--keep_res']),
}
NUM_CLASSES = 80
CAT_IDS = {k + 1: k for k in range(NUM_CLASSES)}  # COCO-style category_id = class + 1
MAX_OBJS = 128
# Training annotations: (category_id, [x, y, w, h]) in original image pixels. a (150 x 200): two overlapping boxes of
# class 0, one ending exactly at the right and bottom borders (x + w = 200, y + h = 150), a small one and one more.
# b (190 x 140): two overlapping boxes of class 2, one starting at the left border (x = 0), one more.
ANNOTATIONS = {
    'a': [(1, [20.5, 30.25, 60.0, 50.0]), (1, [55.0, 45.5, 50.0, 60.0]), (18, [140.0, 90.0, 60.0, 60.0]),
          (57, [5.0, 110.0, 12.0, 9.0]), (80, [100.0, 5.0, 30.5, 20.0])],
    'b': [(3, [0.0, 20.0, 40.0, 70.0]), (3, [30.0, 60.0, 50.0, 40.0]), (46, [60.0, 120.0, 70.0, 60.0])],
}
TRAIN_OPTS = ['--not_rand_crop', '--scale', '0', '--shift', '0', '--flip', '0', '--no_color_aug']

PREPROCESS_NOTE = (
    'Images: uint8 BGR HxWx3 (stored as images.<i>; recipe: see image_recipe). Pre-processing '
    '(detectors/base_detector.py pre_process, scale 1: cv2.resize to the same size is the identity): fix_res (the '
    'default, opt.fix_res = not keep_res): input_h = input_w = 256 (--input_res 256), c = float32 [w / 2, h / 2], s = '
    'max(h, w) (a float); keep_res: input_h = (h | 31) + 1, input_w = (w | 31) + 1 (opt.pad 31: the smallest multiple '
    'of 32 STRICTLY above h, w: 150 -> 160, 190 -> 192, 192 -> 224), c = float32 [w // 2, h // 2] (integer halves), s '
    '= float32 [input_w, input_h]. trans = utils/image.py get_affine_transform(c, s, 0, [input_w, input_h]): with s '
    'scalar -> [s, s]; src = (c, c + (0, -s_w / 2), third point), dst = ((W / 2, H / 2), (W / 2, H / 2 - W / 2), third '
    'point), third point of (a, b) = b + (-(a - b)_y, (a - b)_x), trans = cv2.getAffineTransform(float32 src, float32 '
    'dst), i.e. the similarity x -> (W / s_w) (x - c) + (W / 2, H / 2) (uniform scale W / s_w, no rotation; zero '
    'padding). warped = cv2.warpAffine(image, trans, (input_w, input_h), flags=INTER_LINEAR) (uint8, border 0), stored '
    'as inputs.<i>.<mode>; network input = ((warped / 255. - mean) / std).astype(float32) computed in float64 with '
    'float32 mean/std in BGR channel order (datasets/dataset/coco.py COCO.mean = [0.40789654, 0.44719302, 0.47026115], '
    'COCO.std = [0.28863828, 0.27408164, 0.27809835], as tools test.py sets them), transposed to 1x3xHxW; flip_test: '
    'batch 2 = cat(x, x[..., ::-1]). out_height = input_h // 4, out_width = input_w // 4.'
)

DETECTOR_NOTE = (
    'CtdetDetector(opt).run(images.<i>) with opt = opts().parse(["ctdet", "--arch", ARCH, "--gpus", "-1", '
    '"--input_res", "256", "--K", "100"] + options + ["--load_model", CKPT]) (the argv field) then '
    'update_dataset_info_and_set_heads(opt, COCO) (heads {hm: 80, wh: 2, reg: 2}, head_conv 256, test_scales [1.0], '
    'nms False, reg_offset True, cat_spec_wh False); CKPT = write_checkpoint(load_manifest(checkpoint)) (container '
    '{"epoch": 1, "state_dict"}), loaded by the reference load_model with nothing skipped, dropped or missing; model '
    'in eval mode. process: output = model(x)[-1]; hm = sigmoid(output["hm"]); wh = output["wh"]; reg = output["reg"]; '
    'with flip_test: hm = (hm[0:1] + flip(hm[1:2], dim 3)) / 2 (averaged AFTER the sigmoid), wh = (wh[0:1] + '
    'flip(wh[1:2], dim 3)) / 2 (widths/heights as they are, no sign change), reg = reg[0:1] (the unflipped pass only); '
    'dets = models/decode.py ctdet_decode(hm, wh, reg, K=100): 3x3 max-pool peaks, per-class top-100 then overall '
    'top-100 (torch.topk order, scores descending), box = (xs + reg_x -/+ w / 2, ys + reg_y -/+ h / 2) at the output '
    'stride; dets [1, 100, 6] = x1, y1, x2, y2, score, class (0-based, float). post_process: utils/post_process.py '
    'ctdet_post_process maps (x1, y1) and (x2, y2) with get_affine_transform(c, s, 0, [out_width, out_height], inv=1) '
    '(the inverse similarity: x -> s_w / out_width * (x - (out_width / 2, out_height / 2)) + c; computed in float64, '
    'then float32), groups by class 1..80 keeping decode order within a class; merge_outputs with one scale keeps all '
    '100 (max_per_image 100, no soft-NMS). Flattened class by class (1..80), in decode order within a class: boxes (N, '
    '4) x1, y1, x2, y2 in original image pixels, scores (N,), classes (N,) 0-based, rank (N,) = index of the row in '
    'dets; boxes_clipped = boxes with x clamped to [0, w] and y to [0, h] (detectron2 Boxes.clip). Raw outputs (before '
    'any sigmoid) for the whole batch: wh, reg (B, 2, H, W) in full; hm (B, 80, H, W) logits by fingerprint: hm_kept = '
    'hm[:, hm_kept_classes] (B, P, H, W: every class that has a detection in the top-100, in full), hm_rest_max = the '
    'max over the other classes (B, H, W), hm_class_sum = hm.double().sum((2, 3)) (B, 80) float64, hm_sample = '
    'hm.flatten(1)[:, hm_index] (B, S), hm_index = sorted(torch.randperm(80 * H * W, '
    'generator=manual_seed(seed))[:2048]) (stored). Tie sensitivity (per image): the seeded heads give a nearly flat '
    'heatmap (top-100 scores within ~0.01, mostly one class), so min_score_gap = min of score[k] - score[k + 1] over '
    'the 100 dets (0 when exact_ties > 0: exactly equal scores, ordered as torch.topk leaves them: compare tied rows '
    'as a set), score_next = the (K+1)-th candidate score and boundary_gap = score[99] - score_next (whether the set '
    'of 100 is stable), topk_changed_under_hm_noise[eps] = how many of the 100 (x1, y1, class) detections change when '
    'the process step reruns on the raw outputs with hm logits + U(-eps, eps) (seeded). input_channel_sums = the '
    'per-channel float64 sums of the reference network input x[0] (a checksum of the normalisation; x[1] of flip_test '
    '= x[0] mirrored, checked).'
)


def import_reference(ref: str) -> Dict[str, types.ModuleType]:
    """``generate_ctdet``'s imports plus the options, detector, COCO dataset class and model factory."""
    mods = import_ctdet_pieces(ref)
    fake_module('progress', path='')
    fake_module('progress.bar', Bar=placeholder)  # training loop progress bar (detectors import it, never use it)
    fake_module('external.nms', soft_nms=placeholder)  # compiled soft-NMS: only for several scales or --nms
    for name in ('opts', 'detectors.ctdet', 'datasets.dataset.coco', 'models.model', 'models.networks.dlav0'):
        mods[name] = importlib.import_module(name)
    mods['models.networks.pose_dla_dcn'].DLA.load_pretrained_model = imagenet_fc_only  # as generate_centernet.py
    mods['models.networks.dlav0'].DLA.load_pretrained_model = lambda self, *a, **k: None
    return mods


def make_image(size: Tuple[int, int], seed: int) -> np.ndarray:
    """Smooth colour blobs plus noise: low-res U(0, 1) (3, h/10+2, w/10+2) bilinearly upsampled, x 204 + U(0, 51)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    low = torch.rand(1, 3, h // 10 + 2, w // 10 + 2, generator=g)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode='bilinear', align_corners=False)[0] * 204
    img = img + torch.rand(3, h, w, generator=g) * 51
    return img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def make_opt(ref: Dict[str, types.ModuleType], argv: List[str]) -> Any:
    o = ref['opts'].opts()
    with contextlib.redirect_stdout(io.StringIO()):
        opt = o.parse(argv)
        return o.update_dataset_info_and_set_heads(opt, ref['datasets.dataset.coco'].COCO)


def build_detector(ref: Dict[str, types.ModuleType], opt: Any, man: Dict[str, Any]) -> Any:
    """``CtdetDetector(opt)``: the reference creates the model and loads ``opt.load_model`` itself."""
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        det = ref['detectors.ctdet'].CtdetDetector(opt)
    assert not any(w in log.getvalue() for w in ('Skip', 'Drop', 'No param')), log.getvalue()
    state = det.model.state_dict()
    assert [[k, list(v.shape)] for k, v in state.items()] == [t[:2] for t in man['tensors']]
    assert all(torch.equal(state[k], v) for k, v in synth_state_dict(man).items())
    return det


STEPS = ('pre_process', 'process', 'post_process')


def _record(det: Any, store: Dict[str, Any]) -> List[Any]:
    """Wrap the detector's steps (instance attributes) and hook the model; raw outputs are cloned before sigmoid_."""
    def wrap(name: str, fn: Callable) -> Callable:
        def inner(*a, **k):
            out = fn(*a, **k)
            store[name] = out
            return out
        return inner

    for name in STEPS:
        setattr(det, name, wrap(name, getattr(det, name)))

    def hook(_m, _a, out):
        store['raw'] = {k: v.detach().clone() for k, v in out[-1].items()}
    return [det.model.register_forward_hook(hook)]


def run_detector(det: Any, image: np.ndarray) -> Dict[str, Any]:
    store: Dict[str, Any] = {}
    handles = _record(det, store)
    sync = torch.cuda.synchronize
    torch.cuda.synchronize = lambda *a, **k: None  # timing only
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            store['results'] = det.run(image)['results']
    finally:
        torch.cuda.synchronize = sync
        for h in handles:
            h.remove()
        for name in STEPS:
            delattr(det, name)  # the class's own methods again
    return store


def warped_input(ref: Dict[str, types.ModuleType], det: Any, image: np.ndarray, meta: Dict[str, Any],
                 x: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """The uint8 warped image the reference normalised (checked: normalising it gives its input bit for bit)."""
    import cv2

    h, w = x.shape[-2:]
    trans = ref['utils.image'].get_affine_transform(meta['c'], meta['s'], 0, [w, h])
    warped = cv2.warpAffine(image, trans, (w, h), flags=cv2.INTER_LINEAR)
    norm = ((warped / 255. - det.mean) / det.std).astype(np.float32).transpose(2, 0, 1)
    assert np.array_equal(norm, x[0].numpy()), 'warped input does not reproduce the reference input'
    assert x.shape[0] == 1 or torch.equal(x[1], x[0].flip(-1))  # flip_test: the mirrored copy
    return warped, trans


def channel_sums(x: torch.Tensor) -> List[float]:
    """Per-channel float64 sums of one CHW input (a checksum of the normalisation: mean/std values and order)."""
    return x.double().sum((1, 2)).tolist()


def hm_fingerprint(hm: torch.Tensor, seed: int, keep: List[int]) -> Dict[str, torch.Tensor]:
    """The hm logits of the classes ``keep`` in full, the max over the other classes, per-class sums and seeded
    samples (an 80-class map in full would make the fixtures megabytes)."""
    b, c, h, w = hm.shape
    index = torch.randperm(c * h * w, generator=torch.Generator().manual_seed(seed))[:SAMPLES].sort().values
    rest = [k for k in range(c) if k not in keep]
    return {'hm_kept': hm[:, keep], 'hm_rest_max': hm[:, rest].amax(1), 'hm_class_sum': hm.double().sum((2, 3)),
            'hm_index': index, 'hm_sample': hm.flatten(1)[:, index]}


def flatten_results(results: Dict[int, np.ndarray], dets: torch.Tensor, size: Tuple[int, int]) -> Dict[str, Any]:
    classes = dets[0, :, 5].numpy()
    rows = [np.nonzero(classes == j - 1)[0] for j in range(1, NUM_CLASSES + 1)]
    for j, r in enumerate(rows, 1):
        assert np.array_equal(results[j][:, 4], dets[0, r, 4].numpy()), j
    boxes = torch.from_numpy(np.concatenate([results[j][:, :4] for j in range(1, NUM_CLASSES + 1)]))
    h, w = size
    clipped = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w),
                           boxes[:, 3].clamp(0, h)], 1)
    return {'boxes': boxes, 'boxes_clipped': clipped,
            'scores': torch.from_numpy(np.concatenate([results[j][:, 4] for j in range(1, NUM_CLASSES + 1)])),
            'classes': torch.from_numpy(np.concatenate([np.full(len(r), j - 1) for j, r in enumerate(rows, 1)])),
            'rank': torch.from_numpy(np.concatenate(rows).astype(np.int64))}


def reprocess(det: Any, x: torch.Tensor, raw: Dict[str, torch.Tensor], k: int, noise: float = 0.0,
              seed: int = 0) -> torch.Tensor:
    """The reference ``process`` (sigmoid, flip averaging, ``ctdet_decode``) on recorded raw outputs, the hm logits
    plus U(-noise, noise), with K = ``k``."""
    g = torch.Generator().manual_seed(seed)
    outs = {**raw, 'hm': raw['hm'] + (torch.rand(raw['hm'].shape, generator=g) * 2 - 1) * noise}
    model, kept = det.model, det.opt.K
    det.model, det.opt.K = (lambda _x: [{n: v.clone() for n, v in outs.items()}]), k
    sync = torch.cuda.synchronize
    torch.cuda.synchronize = lambda *a, **kw: None
    try:
        return det.process(x)[1]
    finally:
        det.model, det.opt.K, torch.cuda.synchronize = model, kept, sync


def tie_report(det: Any, x: torch.Tensor, raw: Dict[str, torch.Tensor], dets: torch.Tensor,
               seed: int) -> Dict[str, Any]:
    """How tie-sensitive the top-K is: gaps between consecutive scores, the margin to the (K+1)-th candidate, and how
    many of the K (class, box) detections change when the hm logits move by U(-eps, eps)."""
    scores = dets[0, :, 4]
    assert torch.equal(reprocess(det, x, raw, K), dets), 'reprocess does not reproduce process'
    more = reprocess(det, x, raw, K + 1)
    assert torch.equal(more[0, :K, 4], scores)  # the same values (exact ties may come in another order)
    ident = {tuple(r) for r in dets[0, :, [0, 1, 5]].tolist()}
    changes = {}
    for eps in (1e-7, 1e-6, 1e-5, 1e-4):
        moved = reprocess(det, x, raw, K, eps, seed)
        changes[f'{eps:g}'] = len(ident - {tuple(r) for r in moved[0, :, [0, 1, 5]].tolist()})
    gaps = scores[:-1] - scores[1:]
    return {'min_score_gap': gaps.min().item(), 'exact_ties': int((gaps == 0).sum()),
            'score_range': [scores[-1].item(), scores[0].item()], 'score_next': more[0, K, 4].item(),
            'boundary_gap': (scores[-1] - more[0, K, 4]).item(), 'topk_changed_under_hm_noise': changes}


def detector_case(ref: Dict[str, types.ModuleType], det: Any, key: str, seed: int,
                  images: Dict[str, np.ndarray]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], Dict[str, Any]]:
    image = images[key]
    store = run_detector(det, image)
    x, meta = store['pre_process']
    dets = store['process'][1]
    raw = store['raw']
    warped, trans = warped_input(ref, det, image, meta, x)
    keep = sorted({int(c) for c in dets[0, :, 5].tolist()})
    out = {'dets': dets, 'wh': raw['wh'], 'reg': raw['reg'], **hm_fingerprint(raw['hm'], seed, keep),
           **flatten_results(store['results'], dets, image.shape[:2])}
    info = {'input_hw': list(x.shape[-2:]), 'batch': x.shape[0], 'c': [float(v) for v in np.asarray(meta['c'])],
            's': np.asarray(meta['s'], np.float64).tolist(), 'trans_input': trans.tolist(),
            'out_hw': [meta['out_height'], meta['out_width']], 'hm_index_seed': seed,
            'input_channel_sums': channel_sums(x[0]), 'num_detections': int(out['scores'].numel()),
            'hm_kept_classes': keep,
            **tie_report(det, x, raw, dets, seed)}
    return {f'{key}.{k}': v for k, v in out.items()}, info, {'warped': warped, 'trans': trans}


def detector_fixtures(args, ref: Dict[str, types.ModuleType], images: Dict[str, np.ndarray], tmp: str) -> Dict:
    warped: Dict[str, np.ndarray] = {}
    for i, (name, (model, options)) in enumerate(CASES.items()):
        ckpt_name, arch = MODELS[model]
        man = load_manifest(ckpt_name)
        path = os.path.join(tmp, ckpt_name + '.pth')
        if not os.path.exists(path):
            write_checkpoint(man, path)
        argv = ['ctdet', '--arch', arch, '--gpus', '-1', '--input_res', str(INPUT_RES), '--K', str(K)] + options
        det = build_detector(ref, make_opt(ref, argv + ['--load_model', path]), man)
        tensors, per_image = {}, {}
        for j, key in enumerate(IMAGES):
            t, info, extra = detector_case(ref, det, key, 2650 + 10 * i + j, images)
            mode = 'keep' if '--keep_res' in options else 'fix'
            if f'{key}.{mode}' in warped:
                assert np.array_equal(warped[f'{key}.{mode}'], extra['warped'])
            warped[f'{key}.{mode}'] = extra['warped']
            tensors.update(t)
            per_image[key] = info
        meta = {'name': name, 'reference': reference(args, 'src/lib/detectors/ctdet.py', 'CtdetDetector(opt).run('
                                                     'image) (base_detector.py BaseDetector.run)'),
                'checkpoint': ckpt_name, 'arch': arch, 'argv': argv + ['--load_model', 'CKPT'], 'K': K,
                'flip_test': '--flip_test' in options, 'keep_res': '--keep_res' in options, 'images': per_image,
                'notes': DETECTOR_NOTE}
        save(args.out, name, meta, tensors)
        for k, v in per_image.items():
            print(f'  {k}: min gap {v["min_score_gap"]:.3g}, ties {v["exact_ties"]}, boundary gap '
                  f'{v["boundary_gap"]:.3g}, changed under noise {v["topk_changed_under_hm_noise"]}')
    return warped


def inputs_fixture(args, ref: Dict[str, types.ModuleType], images: Dict[str, np.ndarray],
                   warped: Dict[str, np.ndarray]) -> None:
    coco = ref['datasets.dataset.coco'].COCO
    meta = {'name': 'detector_inputs', 'reference': reference(args, 'src/lib/detectors/base_detector.py',
                                                              'BaseDetector.pre_process(image, 1.0)'),
            'images': {k: {'hw': list(size), 'seed': seed} for k, (size, seed) in IMAGES.items()},
            'image_recipe': make_image.__doc__ + ' (tests/golden/generate_ctdet_detector.py make_image; '
                                                'torch.Generator().manual_seed(seed), CHW -> HWC, round, uint8)',
            'mean_bgr': coco.mean.reshape(-1).tolist(), 'std_bgr': coco.std.reshape(-1).tolist(),
            'input_res': INPUT_RES, 'pad': 31, 'notes': PREPROCESS_NOTE}
    tensors = {f'images.{k}': torch.from_numpy(v) for k, v in images.items()}
    tensors.update({f'inputs.{k}': torch.from_numpy(v) for k, v in warped.items()})
    save(args.out, 'detector_inputs', meta, tensors)


TRAIN_NOTE = (
    'Each image: datasets/sample/ctdet.py CTDetDataset.__getitem__ (split "train") on images.<i> (written as PNG and '
    'read back by cv2.imread: lossless) with the annotations, self.opt = opts().parse(["ctdet", "--arch", "dla_34", '
    '"--gpus", "-1", "--input_res", "256", "--not_rand_crop", "--scale", "0", "--shift", "0", "--flip", "0", '
    '"--no_color_aug", ...]) + update_dataset_info_and_set_heads(opt, COCO), max_objs 128, num_classes 80, cat_ids '
    '{category_id: category_id - 1}, mean/std = COCO.mean/std (BGR). Randomness off: with not_rand_crop the centre '
    'shift is s * clip(randn * 0, 0, 0) = 0 and the scale factor clip(randn * 0 + 1, 1, 1) = 1 (np.random is still '
    'drawn, without effect), flip probability 0, no colour augmentation; so c = [w / 2, h / 2], s = max(h, w) exactly '
    'as fix_res testing and the warped image is inputs.<i>.fix of detector_inputs (checked); input = '
    '((warped.astype(float32) / 255.) - mean) / std in float32 (NOT the float64 of pre_process), CHW; batch = stack(a, '
    'b). Targets: trans_output = get_affine_transform(c, s, 0, [64, 64]); per annotation k: bbox = [x, y, x + w, y + '
    'h] float32, both corners through trans_output (stored as <i>.boxes, before clipping), x clipped to [0, 63], y to '
    '[0, 63]; if h, w > 0: radius = max(0, int(gaussian_radius((ceil(h), ceil(w)), 0.7))), ct = centre (float32), '
    'ct_int = int(ct), draw_umich_gaussian(hm[cls], ct_int, radius), wh[k] = (w, h), ind[k] = ct_int_y * 64 + '
    'ct_int_x, reg[k] = ct - ct_int, reg_mask[k] = 1. Stored: <i>.wh, <i>.reg, <i>.ind, <i>.reg_mask (128 rows), '
    '<i>.hm_kept = hm[classes] for the classes of the batch (target_classes; hm is zero elsewhere, checked). Model: '
    'models/model.py create_model("dla_34", {hm: 80, wh: 2, reg: 2}, 256) + load_model(checkpoint centernet_dla34_dcn) '
    'in EVAL mode (BatchNorm running statistics); out.* = raw outputs model(batch)[-1] (hm as in the detector '
    'fixtures: out.hm_kept = hm logits of target_classes, hm_rest_max, hm_class_sum, hm_index/hm_sample; wh, reg in '
    'full). Loss: trains/ctdet.py CtdetLoss(opt)([outputs], batch) with opt defaults: mse_loss False (FocalLoss on '
    '_sigmoid(hm) = clamp(sigmoid, 1e-4, 1 - 1e-4)), reg_loss "l1" (RegL1Loss: sum |pred * mask - target * mask| / '
    '(mask.sum() + 1e-4), mask expanded to both channels), dense_wh False, norm_wh False, cat_spec_wh False, '
    'reg_offset True, hm_weight 1, wh_weight 0.1, off_weight 1, num_stacks 1: loss = hm_loss + 0.1 wh_loss + off_loss. '
    'focal_kept = FocalLoss()(_sigmoid(out hm[:, target_classes]), target hm[:, target_classes]) (the same loss on the '
    'stored slice, so it can be recomputed from this file alone). input_channel_sums = the per-channel float64 sums of '
    'each reference input (float32 CHW).'
)


def train_fixture(args, ref: Dict[str, types.ModuleType], images: Dict[str, np.ndarray],
                  warped: Dict[str, np.ndarray], tmp: str) -> None:
    ckpt_name, arch = MODELS['dla34_dcn']
    man = load_manifest(ckpt_name)
    path = write_checkpoint(man, os.path.join(tmp, 'train_' + ckpt_name + '.pth'))
    opt = make_opt(ref, ['ctdet', '--arch', arch, '--gpus', '-1', '--input_res', str(INPUT_RES)] + TRAIN_OPTS)
    coco = ref['datasets.dataset.coco'].COCO
    image_type = type('TrainImage', (_Image,), {'split': 'train', 'max_objs': MAX_OBJS, 'num_classes': NUM_CLASSES,
                                                'cat_ids': CAT_IDS, 'mean': coco.mean, 'std': coco.std, 'opt': opt})
    samples = {k: run_dataset(ref, images[k].shape[:2], ANNOTATIONS[k], image_type, images[k]) for k in IMAGES}
    for k, smp in samples.items():
        norm = ((warped[f'{k}.fix'].astype(np.float32) / 255.) - coco.mean) / coco.std
        assert np.array_equal(norm.transpose(2, 0, 1), smp['input'].numpy()), k
    keys = ('input', 'hm', 'wh', 'reg', 'ind', 'reg_mask')
    batch = {n: torch.stack([smp[n] for smp in samples.values()]) for n in keys}
    kept = sorted({int(c) for smp in samples.values() for c in smp['classes'].tolist()})
    assert not batch['hm'][:, [c for c in range(NUM_CLASSES) if c not in kept]].any()
    model_py = ref['models.model']
    with contextlib.redirect_stdout(io.StringIO()):
        model = model_py.load_model(model_py.create_model(arch, opt.heads, opt.head_conv), path)
    assert all(torch.equal(model.state_dict()[n], v) for n, v in synth_state_dict(man).items())
    model.eval()
    with torch.no_grad():
        raw = {n: v.clone() for n, v in model(batch['input'])[-1].items()}
    trains = ref['trains.ctdet']
    loss, stats = trains.CtdetLoss(opt)([{n: v.clone() for n, v in raw.items()}], batch)
    assert torch.equal(loss, stats['loss'])
    focal = trains.FocalLoss()(ref['models.utils']._sigmoid(raw['hm'][:, kept].clone()), batch['hm'][:, kept])
    tensors = {f'loss.{n}': v.detach().reshape(()) for n, v in stats.items()}
    tensors['loss.focal_kept'] = focal.reshape(())
    tensors.update({'out.wh': raw['wh'], 'out.reg': raw['reg']})
    tensors.update({f'out.{n}': v for n, v in hm_fingerprint(raw['hm'], 2699, kept).items()})
    for k, smp in samples.items():
        tensors.update({f'{k}.{n}': smp[n] for n in ('boxes', 'classes', 'wh', 'reg', 'ind', 'reg_mask')})
        tensors[f'{k}.hm_kept'] = smp['hm'][kept]
    meta = {'name': 'train_batch', 'reference': reference(args, 'src/lib/datasets/sample/ctdet.py, '
                                                          'src/lib/trains/ctdet.py', 'CTDetDataset.__getitem__ (split '
                                                          'train, randomness off) + CtdetLoss(opt)'),
            'checkpoint': ckpt_name, 'arch': arch, 'batch': list(IMAGES), 'input': 'detector_inputs inputs.<i>.fix',
            'annotations': {k: [{'category_id': c, 'class': CAT_IDS[c], 'bbox_xywh': b} for c, b in v]
                            for k, v in ANNOTATIONS.items()},
            'image_hw': {k: list(size) for k, (size, _) in IMAGES.items()}, 'input_hw': [INPUT_RES] * 2,
            'output_hw': [INPUT_RES // 4] * 2, 'max_objs': MAX_OBJS, 'num_classes': NUM_CLASSES,
            'target_classes': kept, 'hm_index_seed': 2699,
            'input_channel_sums': {k: channel_sums(smp['input']) for k, smp in samples.items()},
            'loss_weights': {'hm': opt.hm_weight, 'wh': opt.wh_weight, 'off': opt.off_weight},
            'notes': TRAIN_NOTE}
    save(args.out, 'train_batch', meta, tensors)


def main() -> None:
    import tempfile

    parser = common_args(__doc__.splitlines()[0], 'xingyizhou/CenterNet')
    parser.set_defaults(out=os.path.join(HERE, 'data', 'ctdet'))
    args = parser.parse_args()
    ref = import_reference(args.ref)
    images = {k: make_image(size, seed) for k, (size, seed) in IMAGES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        warped = detector_fixtures(args, ref, images, tmp)
        inputs_fixture(args, ref, images, warped)
        train_fixture(args, ref, images, warped, tmp)


if __name__ == '__main__':
    main()
