"""Our BSDS benchmark against pyEdgeEval 0.2.8 (the field's package around the MATLAB benchmark's C++; extra
``boundary``, installed by scripts/setup.sh): the same thinning as MATLAB's tables, the same NMS as ``edgesNmsMex``,
and ODS/OIS/AP within 0.005 of its evaluator on the same synthetic BSDS scenes (benchmarks/boundary_crosscheck.py
measures the full-size case, docs/boundary.md)."""
import numpy as np
import pytest
from scipy import ndimage

from mmseg_ext.boundary import evaluation as ev
from mmseg_ext.boundary.demo import sobel_edges
from mmseg_ext.boundary.synthetic import render_boundary_scene

pyedgeeval = pytest.importorskip('pyEdgeEval', reason="pip install 'dla-plugins[boundary]'")


def test_thinning_equals_matlab_tables(monkeypatch):
    from pyEdgeEval.preprocess.thin import bwmorph_thin

    monkeypatch.setattr(np, 'bool', bool, raising=False)  # pyEdgeEval 0.2.8 uses the alias numpy 1.24 removed
    rng = np.random.default_rng(0)
    for k in range(30):
        b = rng.random((30, 40)) < rng.uniform(0.2, 0.8) if k % 2 else \
            ndimage.binary_dilation(rng.random((30, 40)) < 0.05, iterations=2)
        np.testing.assert_array_equal(ev.thin(b), bwmorph_thin(b))


def test_nms_equals_edges_nms_mex():
    import cv2
    from pyEdgeEval._lib import nms

    rng = np.random.default_rng(0)
    e = cv2.GaussianBlur((rng.random((60, 90)) < 0.03).astype(np.float64), (0, 0), 2)
    e /= e.max()
    o = ev.edge_orientation(e)
    for r in (1, 2):
        np.testing.assert_allclose(ev.edge_nms(e, radius=r, orientation=o), nms(e, o, r=r, s=5, m=1.01),
                                   rtol=0, atol=1e-12)


def test_ods_ois_ap_agree_with_pyedgeeval():
    from pyEdgeEval.common.binary_label import calculate_metrics, evaluate_boundaries_threshold_multiple_gts

    rng = np.random.default_rng(1)
    samples = []
    for i in range(3):
        img, _, bounds = render_boundary_scene((80, 112), rng, 4)
        samples.append(dict(name=str(i), pred=np.round(sobel_edges(img) * 255) / 255, gts=bounds))
    nms = dict(radius=1, smooth=1)  # pyEdgeEval's NMS: Dollar's edgesDetect call
    ours = ev.summarize([ev.evaluate_image(s['pred'], s['gts'], nms_kwargs=nms) for s in samples])
    with_csa = ev.summarize([ev.evaluate_image(s['pred'], s['gts'], nms_kwargs=nms, matcher='pyedgeeval')
                             for s in samples])

    def one(s):
        return evaluate_boundaries_threshold_multiple_gts(ev.default_thresholds(99), s['pred'], s['gts'],
                                                          apply_thinning=True, apply_nms=True)

    theirs = calculate_metrics(eval_single=one, thresholds=99, samples=samples, nproc=1)[2]
    assert 0.3 < theirs['ODS_f1'] < 0.9
    for res in (ours, with_csa):
        assert res['ODS'] == pytest.approx(theirs['ODS_f1'], abs=0.005)
        assert res['OIS'] == pytest.approx(theirs['OIS_f1'], abs=0.005)
        assert res['AP'] == pytest.approx(theirs['AUC'], abs=0.005)  # its AUC is the benchmark's AP
