"""``DLAPCenterNet`` (the shipped configs) against xingyizhou/CenterNet's own detector, dataset and loss: the golden
fixtures ``tests/golden/data/ctdet/detector_*`` and ``train_batch`` (``tests/golden/generate_ctdet_detector.py``: the
reference's ``CtdetDetector.run`` and ``CTDetDataset`` + ``CtdetLoss`` on the seeded CenterNet-format checkpoints).

The checkpoints load by path to the original ``{'epoch', 'state_dict'}`` file through ``d2_ext.train_net``'s
checkpointer, and by name (``dlap://centernet/ctdet_coco_dla_2x``) from a loopback mirror. Compared: the normalised
network input, the raw head outputs (``wh``, ``reg`` in full; ``hm`` through the fixtures' fingerprints), the top-100
detections in image coordinates after detectron2's ``detector_postprocess`` (boxes within 1e-2 px, scores within
1e-4, same classes; exact score ties compared as a set), flip testing, dlav0, and the training targets and each loss
term."""
import json

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from d2_ext.train_net import AtomicCheckpointer
from tests.core.test_ctdet_reference import canonical, fixture, normalised
from tests.d2.test_centernet import cfg_of, ctdet_files  # noqa: F401  (module fixture)
from tests.weights.mirror import files_mirror

CASES = {'detector_dla34_dcn_fix': 'centernet_dla34_dcn_coco.yaml',
         'detector_dla34_dcn_keep': 'centernet_dla34_dcn_coco.yaml',
         'detector_dla34_dcn_fix_flip': 'centernet_dla34_dcn_coco.yaml',
         'detector_dla34_dcn_keep_flip': 'centernet_dla34_dcn_coco.yaml',
         'detector_dlav0_fix': 'centernet_dlav0_coco.yaml', 'detector_dlav0_keep': 'centernet_dlav0_coco.yaml'}
TRAIN_OPTS = ['MODEL.DLAP.CENTERNET.RANDOM_CROP', 'False', 'MODEL.DLAP.CENTERNET.SCALE', '0.0',
              'MODEL.DLAP.CENTERNET.SHIFT', '0.0', 'MODEL.DLAP.CENTERNET.FLIP', '0.0',
              'MODEL.DLAP.CENTERNET.COLOR_AUG', 'False']  # CenterNet's randomness off, as the fixture ran it


def _model(config: str, *opts: str):
    return build_model(cfg_of(config, 'MODEL.DLAP.CENTERNET.INPUT_SIZE', '256', *opts)).eval()


@pytest.fixture(scope='module')
def original_paths(ctdet_files, tmp_path_factory):  # noqa: F811
    tmp = tmp_path_factory.mktemp('orig')
    out = {}
    for name, (data, _) in ctdet_files.items():
        out[name] = str(tmp / f'{name}.pth')
        with open(out[name], 'wb') as f:
            f.write(data)
    return out


def _inputs(key: str):
    _, tensors = fixture('detector_inputs')
    img = tensors[f'images.{key}']
    return {'image': img.permute(2, 0, 1).contiguous(), 'height': img.shape[0], 'width': img.shape[1]}


def _compare_image(model, meta, key: str) -> None:
    ref = {k.split('.', 1)[1]: v for k, v in fixture(meta['name'])[1].items() if k.startswith(key + '.')}
    info, x = meta['images'][key], _inputs(key)
    _, tensors = fixture('detector_inputs')
    with torch.no_grad():
        images, t = model.preprocess_test(x)
        want = normalised(tensors[f'inputs.{key}.{"keep" if meta["keep_res"] else "fix"}'], train=False)
        assert (images[0] - want).abs().max().item() < 1e-6  # the mean/std come from the config, times 255
        assert np.allclose(t.matrix, np.array(info['trans_input']), atol=1e-6)
        out = model.head_outputs(images)
        for k in ('wh', 'reg'):
            assert (out[k] - ref[k]).abs().max().item() < 1e-5, k
        kept = info['hm_kept_classes']
        assert (out['hm'][:, kept] - ref['hm_kept']).abs().max().item() < 1e-5
        sums = out['hm'].double().sum((2, 3))
        assert (sums - ref['hm_class_sum']).abs().max().item() < 1e-2
        boxes, scores, classes = model.decode(out)  # all K, mapped back to the image before detectron2's clipping
        unclipped = t.at_stride(4).inverse_coords(boxes.reshape(-1, 2).double().numpy()).reshape(-1, 4)
        _same(canonical(torch.from_numpy(unclipped).float(), scores, classes),
              canonical(ref['boxes'], ref['scores'], ref['classes']))
        inst = model.inference([x])[0]['instances']
    assert inst.image_size == tuple(tensors[f'images.{key}'].shape[:2])
    boxes = ref['boxes_clipped']
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # detectron2 drops empty boxes
    _same(canonical(inst.pred_boxes.tensor, inst.scores, inst.pred_classes),
          canonical(boxes[nonempty], ref['scores'][nonempty], ref['classes'][nonempty]))


def _same(got, want, boundary_gap: float = 1e-5) -> None:
    """Same detections: each reference row has its own row of ours with the same class, the score within 1e-4 and
    the box within 1e-2 px. The seeded heads give nearly flat heatmaps: scores that tie (or differ by float summation
    order, e.g. another thread count) may swap, and a candidate within ``boundary_gap`` of the K-th score may swap
    with the (K+1)-th: at most 2 such reference rows may go unmatched."""
    assert len(got[0]) == len(want[0])
    free = list(range(len(got[0])))
    unmatched = []
    for i in range(len(want[0])):
        ok = [j for j in free if got[2][j] == want[2][i] and abs(got[1][j] - want[1][i]) <= 1e-4
              and (got[0][j] - want[0][i]).abs().max() <= 1e-2]
        if ok:
            free.remove(min(ok, key=lambda j: (got[0][j] - want[0][i]).abs().max().item()))
        else:
            unmatched.append(i)
    lowest = want[1].min().item() if len(want[1]) else 0.0
    assert len(unmatched) <= 2 and all(want[1][i] - lowest <= boundary_gap for i in unmatched), unmatched


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CASES))
def test_detections_equal_the_reference_detector(name, original_paths):
    """MODEL.WEIGHTS = the original CenterNet file by path (d2_ext.train_net's checkpointer converts it)."""
    meta, _ = fixture(name)
    opts = ['MODEL.DLAP.CENTERNET.KEEP_RES', str(meta['keep_res']), 'MODEL.DLAP.CENTERNET.FLIP_TEST',
            str(meta['flip_test'])]
    model = _model(CASES[name], *opts)
    AtomicCheckpointer(model).load(original_paths[meta['checkpoint']])
    for key in ('a', 'b'):
        _compare_image(model, meta, key)


def _train_inputs(meta) -> list:
    annotations = meta['annotations']
    out = []
    for key in meta['batch']:
        x = _inputs(key)
        anns = annotations[key]
        inst = Instances(tuple(meta['image_hw'][key]))
        xyxy = [[a['bbox_xywh'][0], a['bbox_xywh'][1], a['bbox_xywh'][0] + a['bbox_xywh'][2],
                 a['bbox_xywh'][1] + a['bbox_xywh'][3]] for a in anns]
        inst.gt_boxes = Boxes(torch.tensor(np.array(xyxy, dtype=np.float32)))
        inst.gt_classes = torch.tensor([a['class'] for a in anns])
        out.append(dict(x, instances=inst))
    return out


def test_shipped_config_by_name_reproduces_reference_detections_targets_and_loss(ctdet_files, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    """The done-when run: the shipped config with MODEL.WEIGHTS dlap://centernet/ctdet_coco_dla_2x, served by a
    loopback mirror (the CenterNet-format file with seeded weights)."""
    meta, ref = fixture('train_batch')
    if isinstance(meta['annotations'], str):
        meta['annotations'] = json.loads(meta['annotations'])
    data, _ = ctdet_files['centernet_dla34_dcn']
    model = _model('centernet_dla34_dcn_coco.yaml', 'MODEL.DLAP.CENTERNET.KEEP_RES', 'False', *TRAIN_OPTS)
    with files_mirror(tmp_path, {'centernet/ctdet_coco_dla_2x/ctdet_coco_dla_2x.pth': data}, monkeypatch):
        AtomicCheckpointer(model).load('dlap://centernet/ctdet_coco_dla_2x')
    _compare_image(model, fixture('detector_dla34_dcn_fix')[0], 'a')
    model.train()
    images, targets = model.preprocess_train(_train_inputs(meta))
    _, tensors = fixture('detector_inputs')
    for i, key in enumerate(meta['batch']):
        assert (images[i] - normalised(tensors[f'inputs.{key}.fix'], train=True)).abs().max().item() < 1e-6
        for k in ('wh', 'reg', 'ind', 'reg_mask'):
            assert torch.equal(targets[k][i].cpu(), ref[f'{key}.{k}']), (key, k)
        assert torch.equal(targets['hm'][i][meta['target_classes']], ref[f'{key}.hm_kept'])
    model.eval()  # the reference loss was computed on the model's eval-mode outputs
    with torch.no_grad():
        losses = model.losses(model.head_outputs(images), targets)
    for ours, theirs, w in (('loss_hm', 'hm_loss', 1.0), ('loss_wh', 'wh_loss', 0.1), ('loss_off', 'off_loss', 1.0)):
        want = w * ref[f'loss.{theirs}'].item()
        assert abs(losses[ours].item() - want) <= 1e-5 * abs(want), (ours, losses[ours].item(), want)
    assert abs(sum(losses.values()).item() - ref['loss.loss'].item()) <= 1e-5 * ref['loss.loss'].item()
