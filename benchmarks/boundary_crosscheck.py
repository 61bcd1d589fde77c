"""Cross-check of our BSDS benchmark (mmseg_ext.boundary.evaluation) against pyEdgeEval 0.2.8, the field's Python
package that wraps the MATLAB benchmark's C++ (CSA correspondence, Dollar's NMS). Developer script behind the numbers
in docs/boundary.md; needs ``pip install 'dla-plugins[boundary]'``.

    python -m benchmarks.boundary_crosscheck [--images 12] [--size 321 481]

Compares, piece by piece and as a whole: thinning (ours vs pyEdgeEval's port of MATLAB's ``bwmorph`` tables and vs
the py-bsds500 thinning its evaluator uses), NMS (ours vs the C++ ``edgesNmsMex``), the correspondence (our exact
assignment vs CSA: matched pixels, time) and ODS/OIS/AP of synthetic BSDS scenes scored by both evaluators.
"""
import argparse
import sys
import time

import numpy as np

from mmseg_ext.boundary import evaluation as ev
from mmseg_ext.boundary.demo import sobel_edges  # noqa: E402
from mmseg_ext.boundary.synthetic import render_boundary_scene  # noqa: E402


def _thinning(rng: np.random.Generator, n: int) -> str:
    from pyEdgeEval.preprocess import binary_thin
    from pyEdgeEval.preprocess.thin import bwmorph_thin
    from scipy import ndimage

    if not hasattr(np, 'bool'):  # pyEdgeEval 0.2.8's bwmorph_thin still uses the alias numpy 1.24 removed
        np.bool = bool
    diff_matlab = diff_py = 0
    for k in range(n):
        b = rng.random((40, 50)) < rng.uniform(0.2, 0.8) if k % 2 else \
            ndimage.binary_dilation(rng.random((40, 50)) < 0.05, iterations=2)
        ours = ev.thin(b)
        diff_matlab += bool((ours != bwmorph_thin(b)).any())
        diff_py += bool((ours != binary_thin(b)).any())
    return (f'thinning, {n} random maps: differs from the MATLAB-table port (bwmorph_thin) on {diff_matlab}, from '
            f"pyEdgeEval's evaluator thinning (binary_thin, py-bsds500) on {diff_py}")


def _nms(rng: np.random.Generator) -> str:
    import cv2
    from pyEdgeEval._lib import nms
    from pyEdgeEval.preprocess import fast_nms

    e = cv2.GaussianBlur((rng.random((321, 481)) < 0.01).astype(np.float64), (0, 0), 2)
    e /= e.max()
    o = ev.edge_orientation(e)
    same = np.abs(ev.edge_nms(e, orientation=o) - nms(e, o, r=2, s=5, m=1.01)).max()
    ours, theirs = ev.edge_nms(e, radius=1, smooth=1), fast_nms(e, r=1, s=5, m=1.01)
    return (f'NMS, 321x481: max |ours - edgesNmsMex| {same:.1e} with one orientation map; with each its own '
            f'orientation (theirs sets Oxx == 0 to 1e-5, Dollar adds 1e-5) {((ours > 0) != (theirs > 0)).mean():.2%} '
            f'of the pixels differ')


def _correspondence(rng: np.random.Generator, n: int) -> str:
    from pyEdgeEval._lib import correspond_pixels as csa

    more = fewer = 0
    t_ours = t_csa = 0.0
    total = 0
    for _ in range(n):
        _, _, bounds = render_boundary_scene((321, 481), rng, 6)
        gt = bounds[0]
        pred = np.roll(gt, int(rng.integers(-3, 4)), axis=int(rng.integers(2))) | (rng.random(gt.shape) < 0.01)
        t = time.time()
        a = int(ev.correspond_pixels(pred, gt)[0].sum())
        t_ours += time.time() - t
        t = time.time()
        b = int((csa(pred.astype(float), gt.astype(float), ev.BSDS_MAX_DIST)[0] > 0).sum())
        t_csa += time.time() - t
        more += a > b
        fewer += a < b
        total += a - b
    return (f'correspondence, {n} pairs 321x481: ours matches more pixels in {more}, fewer in {fewer} '
            f'({total:+d} pixels in all); {1e3 * t_ours / n:.1f} ms vs CSA {1e3 * t_csa / n:.1f} ms per pair')


def _evaluation(rng: np.random.Generator, n: int, size) -> str:
    from pyEdgeEval.common.binary_label import calculate_metrics, evaluate_boundaries_threshold_multiple_gts

    samples, rows = [], []
    for i in range(n):
        img, _, bounds = render_boundary_scene(tuple(size), rng, 5)
        samples.append(dict(name=str(i), pred=np.round(sobel_edges(img) * 255) / 255, gts=bounds))
    t = time.time()
    ours = ev.summarize([ev.evaluate_image(s['pred'], s['gts'], nms_kwargs=dict(radius=1, smooth=1))
                         for s in samples])
    t_ours = time.time() - t
    csa_matcher = ev.summarize([ev.evaluate_image(s['pred'], s['gts'], nms_kwargs=dict(radius=1, smooth=1),
                                                  matcher='pyedgeeval') for s in samples])

    def one(s):
        return evaluate_boundaries_threshold_multiple_gts(ev.default_thresholds(99), s['pred'], s['gts'],
                                                          apply_thinning=True, apply_nms=True)

    t = time.time()
    _, _, theirs = calculate_metrics(eval_single=one, thresholds=99, samples=samples, nproc=1)
    t_theirs = time.time() - t
    rows.append(f"  ours (exact assignment)        ODS {ours['ODS']:.4f}  OIS {ours['OIS']:.4f}  AP {ours['AP']:.4f}"
                f'  {t_ours:.1f} s')
    rows.append(f"  ours with the CSA matcher      ODS {csa_matcher['ODS']:.4f}  OIS {csa_matcher['OIS']:.4f}  "
                f"AP {csa_matcher['AP']:.4f}")
    rows.append(f"  pyEdgeEval (AUC = MATLAB's AP) ODS {theirs['ODS_f1']:.4f}  OIS {theirs['OIS_f1']:.4f}  "
                f"AP {theirs['AUC']:.4f}  {t_theirs:.1f} s  (its own 'AP' {theirs['AP']:.4f})")
    return (f'evaluation, Sobel on {n} synthetic BSDS scenes {size[0]}x{size[1]} (5 annotators, NMS r=1 after '
            f'convTri(1), 99 thresholds):\n' + '\n'.join(rows))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=12)
    p.add_argument('--size', type=int, nargs=2, default=(321, 481))
    args = p.parse_args()
    rng = np.random.default_rng(0)
    for line in (_thinning(rng, 200), _nms(rng), _correspondence(rng, 20), _evaluation(rng, args.images, args.size)):
        print(line, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
