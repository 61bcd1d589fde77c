"""The BSDS boundary benchmark (mmseg_ext.boundary.evaluation): ODS / OIS / AP on constructed cases with known
answers, and the pieces (thinning, NMS, one-to-one correspondence) on cases worked out by hand."""
import numpy as np
import pytest
from scipy import ndimage

from mmseg_ext.boundary import evaluation as ev
from mmseg_ext.eval_boundary import main as eval_main

SIZE = 200  # diagonal 282.8 px: the benchmark's tolerance 0.0075 x diagonal is 2.12 px


def _lines(dy: int = 0, dx: int = 0) -> np.ndarray:
    """A horizontal (row 60) and a vertical (column 100) line of 120 pixels, the first moved down by ``dy``, the
    second right by ``dx``; both at least 5 pixels from the border (NMS fades the border)."""
    m = np.zeros((SIZE, SIZE))
    m[60 + dy, 40:160] = 1
    m[70:190, 100 + dx] = 1
    return m


def _score(preds, gts, **kw):
    return ev.summarize([ev.evaluate_image(p, g, **kw) for p, g in zip(preds, gts)])


def test_ground_truth_lines_are_thin():
    assert (ev.thin(_lines()) == _lines().astype(bool)).all()


def test_prediction_equal_to_ground_truth():
    gt = _lines()
    res = _score([gt], [[gt]])
    assert res['ODS'] == 1 and res['OIS'] == 1
    assert res['AP'] == 0  # one recall level only: the benchmark's area is 0 (collect_eval_bdry: numel(Ru) > 1)
    graded = gt.copy()
    graded[70:190, 100] = 0.5  # the vertical line is found only below threshold 0.5: recall 1, then 0.5
    res = _score([graded], [[gt]])
    assert res['ODS'] == 1 and res['OIS'] == 1
    assert res['AP'] == pytest.approx(0.51, abs=1e-12)  # precision 1 at recall 0.50, 0.51, ..., 1.00: 51 x 0.01


@pytest.mark.parametrize('shift,expect', [(2, 1.0), (3, 0.0)])
def test_prediction_shifted_by_less_and_by_more_than_the_tolerance(shift, expect):
    res = _score([_lines(shift, shift)], [[_lines()]])
    assert res['ODS'] == expect and res['OIS'] == expect
    wider = _score([_lines(shift, shift)], [[_lines()]], max_dist=3.2 / np.hypot(SIZE, SIZE))
    assert wider['ODS'] == 1


def test_empty_prediction():
    counts = ev.evaluate_image(np.zeros((SIZE, SIZE)), [_lines()])
    assert counts.shape == (99, 4) and (counts[:, [0, 2, 3]] == 0).all() and (counts[:, 1] == 240).all()
    assert ev.summarize([counts]) == dict(ODS=0.0, OIS=0.0, AP=0.0, ODS_threshold=0.01, ODS_precision=0.0,
                                       ODS_recall=0.0)


def test_several_annotators_pool_recall_and_share_precision():
    both, horizontal = _lines(), _lines()
    horizontal[70:190, 100] = 0
    res = _score([horizontal], [[both, horizontal]])  # recall (120 + 120) / (240 + 120), every pixel correct
    assert res['ODS_recall'] == pytest.approx(2 / 3) and res['ODS_precision'] == 1
    assert res['ODS'] == pytest.approx(0.8)
    res = _score([both], [[both, horizontal]])  # the vertical line matches annotator 0 only: still correct
    assert res['ODS'] == 1


def test_ods_ois_ap_of_two_images_with_different_best_thresholds():
    """Image X: its lines at 0.305, a false line at 0.205; image Y: lines at 0.905, a false one at 0.805. Each is
    perfect at its own threshold (OIS 1); one threshold for both gives at best P 0.8, R 1 (t in 0.21..0.30)."""
    gt = _lines()
    false = np.zeros((SIZE, SIZE))
    false[70:190, 160] = 1
    x, y = 0.305 * gt + 0.205 * false, 0.905 * gt + 0.805 * false
    res = _score([x, y], [[gt], [gt]])
    assert res['OIS'] == 1
    assert res['ODS'] == pytest.approx(8 / 9) and res['ODS_threshold'] == pytest.approx(0.21)
    # recall 1 (P 2/3 first), 0.5 (P 2/3 first), 0 (P 0): P(R) rises linearly to 2/3 at R 0.5, then stays
    assert res['AP'] == pytest.approx(0.01 * (2 / 3 * sum(k / 50 for k in range(51)) + 50 * 2 / 3))


def test_correspondence_is_one_to_one_and_optimal():
    gt = np.zeros((SIZE, SIZE), bool)
    pred = np.zeros((SIZE, SIZE), bool)
    gt[50, [50, 52]] = True
    pred[50, [51, 53]] = True  # a greedy nearest match of (50, 51) to (50, 52) would leave (50, 53) without one
    m1, m2, cost = ev.correspond_pixels(pred, gt)
    assert (m1 == pred).all() and (m2 == gt).all() and cost == 2
    pred[50, 53] = False
    pred[51, 51] = True  # two predictions within reach of (50, 50) and (50, 52): each is used once
    m1, m2, _ = ev.correspond_pixels(pred, gt)
    assert m1.sum() == m2.sum() == 2
    far = np.zeros_like(gt)
    far[60, 60] = True
    assert ev.correspond_pixels(far, gt)[0].sum() == 0


def test_thinning_keeps_topology():
    rng = np.random.default_rng(0)
    eight = np.ones((3, 3), bool)
    for _ in range(20):
        blobs = ndimage.binary_dilation(rng.random((40, 50)) < 0.03, iterations=2)
        t = ev.thin(blobs)
        assert not (t & ~blobs).any() and (ev.thin(t) == t).all()
        assert ndimage.label(t, eight)[1] == ndimage.label(blobs, eight)[1]
    box = np.zeros((20, 30), bool)
    box[5:15, 5:25] = True
    t = ev.thin(box)
    assert t.sum() < 25 and ndimage.label(t, eight)[1] == 1  # a filled rectangle becomes a short stroke
    ring = box.copy()
    ring[8:12, 9:21] = False
    t = ev.thin(ring)
    assert ndimage.label(~t)[1] == 2  # the hole stays a hole


def test_nms_keeps_the_ridge_and_fades_the_border():
    cols = np.arange(SIZE)[None, :]
    blurred = np.exp(-0.5 * ((cols - 80) / 2.0) ** 2) * np.ones((SIZE, 1))  # a vertical ridge 2 px wide
    out = ev.edge_nms(blurred)
    inner = out[5:-5]
    assert (inner[:, 80] == 1).all() and (np.delete(inner, 80, axis=1) == 0).all()
    assert np.allclose(out[:6, 80], [0, 0.2, 0.4, 0.6, 0.8, 1.0])  # linear fade over `border` = 5 pixels


@pytest.mark.parametrize('thresholds,message', [
    (0, 'thresholds: a count must be >= 1, got 0'),
    ([0.5, 0.2], 'thresholds: a count or increasing values in [0, 1] expected, got [0.5, 0.2]'),
    ([1.5], 'thresholds: a count or increasing values in [0, 1] expected, got [1.5]'),
])
def test_bad_thresholds(thresholds, message):
    with pytest.raises(ValueError) as e:
        ev.default_thresholds(thresholds)
    assert str(e.value) == message


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError) as e:
        ev.evaluate_image(np.zeros((10, 10)), [np.zeros((10, 12))])
    assert str(e.value) == 'gts: every ground truth must have the prediction shape (10, 10), got (10, 12)'
    with pytest.raises(ValueError) as e:
        ev.evaluate_image(np.zeros((10, 10)), [np.zeros((10, 10))], matcher='csa')
    assert str(e.value) == "matcher: unknown 'csa'; allowed: ['scipy', 'pyedgeeval']"
    with pytest.raises(ValueError) as e:
        ev.correspond_pixels(np.zeros((10, 10)), np.zeros((10, 12)))
    assert str(e.value) == 'pred, gt: two 2-d maps of one shape expected, got (10, 10) and (10, 12)'
    with pytest.raises(ValueError) as e:
        ev.summarize([])
    assert str(e.value) == 'per_image: no image was evaluated'


def test_eval_boundary_entry_on_files(tmp_path, capsys):
    """PNG maps against PNG ground truth (the .mat case runs in test_boundary_train.py); and its bad input."""
    import cv2

    pred_dir, gt_dir = tmp_path / 'pred', tmp_path / 'gt'
    pred_dir.mkdir()
    gt_dir.mkdir()
    cv2.imwrite(str(gt_dir / 'a.png'), (_lines() * 255).astype(np.uint8))
    cv2.imwrite(str(pred_dir / 'a.png'), (_lines(2, 2) * 255).astype(np.uint8))
    assert eval_main([str(pred_dir), str(gt_dir)]) == 0
    assert capsys.readouterr().out.startswith('[eval_boundary] 1 images: ODS 1.0000 (threshold 0.010, P 1.0000, '
                                              'R 1.0000), OIS 1.0000, AP 0.0000')
    cv2.imwrite(str(gt_dir / 'b.png'), np.zeros((SIZE, SIZE), np.uint8))
    with pytest.raises(FileNotFoundError) as e:
        eval_main([str(pred_dir), str(gt_dir)])
    assert str(e.value) == "PRED_DIR: 1 of 2 image(s) have no prediction (<id>.png or <id>.npy), e.g. 'b'"
    np.save(pred_dir / 'b.npy', np.zeros((SIZE, SIZE + 1)))
    with pytest.raises(ValueError) as e:
        eval_main([str(pred_dir), str(gt_dir)])
    assert str(e.value) == (f"prediction {str(pred_dir / 'b.npy')!r}: shape (200, 201) differs from its ground "
                            f"truth (200, 200)")
    with pytest.raises(FileNotFoundError) as e:
        eval_main([str(tmp_path / 'none'), str(gt_dir)])
    assert str(e.value) == f"PRED_DIR: no such folder {str(tmp_path / 'none')!r}"
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError) as e:
        eval_main([str(pred_dir), str(tmp_path / 'empty')])
    assert str(e.value) == f"GT_DIR: no .mat or .png ground truth in {str(tmp_path / 'empty')!r}"
