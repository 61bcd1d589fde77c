"""The shipped CenterNet config through detectron2's own ``tools/train_net.py`` (``python -m d2_ext.run``): ImageNet
weights by name from a loopback mirror, a few hundred iterations on synthetic shapes in COCO's layout, COCOEvaluator;
the loss falls and bbox AP beats a predict-the-mean-box baseline; ``--eval-only`` reproduces the evaluation and
``--resume`` continues from the last checkpoint."""
import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import d2_ext
from tests.d2.test_stock_tools import TOOLS, _run, coco_layout
from tests.weights.mirror import in1k_mirror

ITERS = 160
# The shipped yaml at 64 px, batch 8, on the synthetic shapes. detectron2's yaml optimizer is SGD (CenterNet's Adam is
# in the LazyConfig): 0.01 at batch 8 is the shipped 0.04 at batch 32, scaled linearly; gradient clipping as shipped.
OPTS = ['MODEL.DEVICE', 'cpu', 'MODEL.DLAP.CENTERNET.INPUT_SIZE', '64', 'SOLVER.IMS_PER_BATCH', '8',
        'SOLVER.BASE_LR', '0.01', 'SOLVER.WARMUP_ITERS', '40', 'SOLVER.STEPS', '()', 'SOLVER.CHECKPOINT_PERIOD', '80',
        'DATALOADER.NUM_WORKERS', '0', 'SEED', '1', 'TEST.EVAL_PERIOD', '0',
        'MODEL.DLAP.CENTERNET.KEEP_RES', 'False']  # tested at the trained 64 px (KEEP_RES would pad 64 to 96)


def coco_ap(gt_json: str, dets: list) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_json)
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def mean_box_baseline(train_json: str, val_json: str) -> list:
    """Every class's mean training box in every validation image, scored by the class frequency."""
    with open(train_json) as f:
        anns = json.load(f)['annotations']
    with open(val_json) as f:
        images = json.load(f)['images']
    boxes: dict = {}
    for a in anns:
        boxes.setdefault(a['category_id'], []).append(a['bbox'])
    return [dict(image_id=img['id'], category_id=c, bbox=np.mean(b, 0).tolist(), score=len(b) / len(anns))
            for img in images for c, b in boxes.items()]


def _losses(out_dir: str) -> list:
    with open(os.path.join(out_dir, 'metrics.json')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['total_loss'] for r in rows if 'total_loss' in r]


@pytest.mark.slow
def test_stock_train_net_trains_evaluates_and_resumes(tmp_path):
    data = coco_layout(tmp_path / 'datasets', (('train2017', 48, 0), ('val2017', 16, 1)))
    ann = os.path.join(data, 'coco', 'annotations')
    out_dir = str(tmp_path / 'out')
    train = ['-m', 'd2_ext.run', os.path.join(TOOLS, 'train_net.py'),
             '--config-file', d2_ext.get_config_file('centernet_dla34_dcn_coco.yaml')]
    with in1k_mirror(tmp_path, 'dla34') as (env, _):
        rc, out = _run([*train, *OPTS, 'SOLVER.MAX_ITER', str(ITERS), 'OUTPUT_DIR', out_dir], data, tmp_path, env)
    assert rc == 0, out[-3000:]
    assert 'weights dla34.in1k: from mirror' in out
    losses = _losses(out_dir)
    assert len(losses) >= 6 and np.mean(losses[-2:]) < 0.6 * np.mean(losses[:2]), losses
    with open(os.path.join(out_dir, 'inference', 'coco_instances_results.json')) as f:
        ours = coco_ap(os.path.join(ann, 'instances_val2017.json'), json.load(f))
    baseline = coco_ap(os.path.join(ann, 'instances_val2017.json'),
                       mean_box_baseline(os.path.join(ann, 'instances_train2017.json'),
                                         os.path.join(ann, 'instances_val2017.json')))
    print(f'bbox AP {ours:.4f} vs mean-box baseline {baseline:.4f}; total_loss every 20 iterations {losses}')
    assert ours > 0.01 and ours > 10 * baseline, (ours, baseline)

    rc, out = _run([*train, '--eval-only', *OPTS, 'MODEL.WEIGHTS', os.path.join(out_dir, 'model_final.pth'),
                    'OUTPUT_DIR', str(tmp_path / 'eval')], data, tmp_path)
    assert rc == 0, out[-3000:]
    with open(tmp_path / 'eval' / 'inference' / 'coco_instances_results.json') as f:
        assert abs(coco_ap(os.path.join(ann, 'instances_val2017.json'), json.load(f)) - ours) < 1e-9

    os.remove(os.path.join(out_dir, 'model_final.pth'))  # as if killed after the checkpoint of iteration 80
    with open(os.path.join(out_dir, 'last_checkpoint'), 'w') as f:
        f.write('model_0000079.pth')
    rc, out = _run([*train, '--resume', *OPTS, 'SOLVER.MAX_ITER', '84', 'OUTPUT_DIR', out_dir], data, tmp_path)
    assert rc == 0, out[-3000:]
    assert f"[Checkpointer] Loading from {os.path.join(out_dir, 'model_0000079.pth')} ..." in out
    assert 'Starting training from iteration 80' in out


@pytest.mark.slow
def test_stock_lazyconfig_train_net_runs_the_lazy_recipe(tmp_path):
    """CenterNet's own recipe (Adam) as a LazyConfig through detectron2's lazyconfig_train_net.py, COCOEvaluator."""
    data = coco_layout(tmp_path / 'datasets', (('train2017', 8, 0), ('val2017', 4, 1)))
    out_dir = tmp_path / 'out'
    rc, out = _run([os.path.join(TOOLS, 'lazyconfig_train_net.py'),
                    '--config-file', d2_ext.get_config_file('centernet_dla34_dcn_coco_lazy.py'),
                    'train.device=cpu', 'train.max_iter=4', f'train.output_dir={out_dir}', 'train.init_checkpoint=',
                    'train.eval_period=0', 'dataloader.train.total_batch_size=2', 'dataloader.train.num_workers=0',
                    'dataloader.test.num_workers=0', 'model.input_size=64', 'model.train_affine.size=64',
                    'lr_multiplier.scheduler.num_updates=4', 'lr_multiplier.scheduler.milestones=[2,3]'],
                   data, tmp_path)
    assert rc == 0, out[-3000:]
    assert (out_dir / 'model_final.pth').is_file() and 'Evaluation results for bbox' in out
