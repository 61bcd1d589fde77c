"""The BSDS boundary benchmark in numpy/scipy: edge NMS, thinning, pixel correspondence, ODS / OIS / AP.

It follows the MATLAB benchmark of the BSDS500 release (``evaluation_bdry_image.m``, ``collect_eval_bdry.m``,
``correspondPixels``) and the edge NMS that HED/RCF apply before it (Dollar's ``edgesNmsMex``):

1. (optional) NMS of the edge map along the normal estimated from its second derivatives;
2. for each of ``thresholds`` (99: 0.01 ... 0.99) the map ``pred >= t`` is thinned (``bwmorph(.., 'thin', Inf)``)
   and matched one-to-one with each annotator's boundaries, pixels at most ``max_dist x diagonal`` apart;
3. recall pools the matched ground-truth pixels of every annotator; precision counts a predicted pixel as correct
   when it matches any annotator;
4. ODS: the best F of the dataset-level counts over thresholds (interpolated between neighbouring thresholds, 100
   steps); OIS: F of the counts pooled at each image's best threshold; AP: the area under the dataset-level
   precision-recall curve sampled at recall 0, 0.01, ..., 1.

What differs from the MATLAB code (docs/boundary.md): the correspondence is an exact minimum-cost assignment of the
same costs (scipy's LAPJVsp) instead of the approximate CSA solver on a graph with random sparse outlier edges; AP
samples 101 recall points and takes the first of equal recalls, as modern MATLAB's ``unique``.
"""
import math
import multiprocessing
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import sparse
from scipy.ndimage import convolve1d
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

__all__ = ['BSDS_MAX_DIST', 'OUTLIER_COST', 'default_thresholds', 'conv_tri', 'edge_orientation', 'edge_nms',
           'thin', 'correspond_pixels', 'evaluate_image', 'evaluate_many', 'summarize', 'f_measure', 'precision_recall',
           'MATCHERS']

BSDS_MAX_DIST = 0.0075  # the benchmark's tolerance, a fraction of the image diagonal
OUTLIER_COST = 100.0  # correspondPixels' default: an unmatched pixel costs 100 x the maximum distance

Thresholds = Union[int, Sequence[float], np.ndarray]


def default_thresholds(thresholds: Thresholds = 99) -> np.ndarray:
    """``n`` evenly spaced thresholds strictly inside (0, 1) as the benchmark's ``linspace(1/(n+1), 1-1/(n+1), n)``,
    or the given values (each in [0, 1])."""
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        if thresholds < 1:
            raise ValueError(f'thresholds: a count must be >= 1, got {thresholds}')
        return np.linspace(1.0 / (thresholds + 1), 1.0 - 1.0 / (thresholds + 1), int(thresholds))
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all((values >= 0) & (values <= 1)) or np.any(np.diff(values) <= 0):
        raise ValueError(f'thresholds: a count or increasing values in [0, 1] expected, got {thresholds!r}')
    return values


# ---------------------------------------------------------------------------------------------------------- NMS
def conv_tri(image: np.ndarray, r: int) -> np.ndarray:
    """Separable triangle filter of radius ``r`` with symmetric padding (Dollar's ``convTri``; r=1 is [1 2 1]/4)."""
    if r <= 0:
        return image
    f = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float64) / (r + 1) ** 2
    out = convolve1d(image, f, axis=0, mode='reflect')  # scipy's 'reflect' repeats the edge pixel: MATLAB symmetric
    return convolve1d(out, f, axis=1, mode='reflect')


def edge_orientation(edge: np.ndarray) -> np.ndarray:
    """Normal direction in [0, pi) of the edges of ``edge`` from the second derivatives of ``conv_tri(edge, 4)``."""
    oy, ox = np.gradient(conv_tri(edge, 4))
    oxx = np.gradient(ox, axis=1)
    oyy, oxy = np.gradient(oy)
    return np.mod(np.arctan(oyy * np.sign(-oxy) / (oxx + 1e-5)), np.pi)


def _bilinear(image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    h, w = image.shape
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    dx, dy = x - x0, y - y0
    return (image[y0, x0] * (1 - dx) * (1 - dy) + image[y0, x0 + 1] * dx * (1 - dy)
            + image[y0 + 1, x0] * (1 - dx) * dy + image[y0 + 1, x0 + 1] * dx * dy)


def edge_nms(edge: np.ndarray, radius: int = 2, border: int = 5, margin: float = 1.01, smooth: int = 0,
             orientation: Optional[np.ndarray] = None) -> np.ndarray:
    """Non-maximum suppression of an edge map (H x W, values in [0, 1]), as Dollar's ``edgesNmsMex``.

    A pixel is zeroed when ``margin`` times its value is below the bilinearly interpolated value at any distance
    ``1..radius`` along its normal; values within ``border`` pixels of the image border are then faded linearly.
    ``smooth`` > 0 first applies ``conv_tri(edge, smooth)``. The defaults are RCF's BSDS500 call
    (``edgesNmsMex(E, O, 2, 5, 1.01)``); Dollar's ``edgesDetect`` and pyEdgeEval use ``radius=1, smooth=1``.
    """
    e = np.asarray(edge, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f'edge: a 2-d map expected, got shape {e.shape}')
    e = conv_tri(e, smooth)
    o = edge_orientation(e) if orientation is None else orientation
    h, w = e.shape
    yy, xx = np.nonzero(e)
    keep = np.ones(yy.size, dtype=bool)
    val = e[yy, xx] * margin
    cos_o, sin_o = np.cos(o[yy, xx]), np.sin(o[yy, xx])
    for d in range(-radius, radius + 1):
        if d:
            keep &= ~(val < _bilinear(e, yy + d * sin_o, xx + d * cos_o))
    out = np.zeros_like(e)
    out[yy[keep], xx[keep]] = e[yy[keep], xx[keep]]
    s = min(border, w // 2, h // 2)
    if s > 0:
        fx = np.minimum(np.minimum(np.arange(w), np.arange(w)[::-1]), s) / s
        fy = np.minimum(np.minimum(np.arange(h), np.arange(h)[::-1]), s) / s
        out *= fy[:, None] * fx[None, :]
    return out


# ----------------------------------------------------------------------------------------------------- thinning
def _thin_luts() -> Tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two sub-iterations of Guo & Hall's thinning (MATLAB's ``bwmorph(.., 'thin')``),
    indexed by the 8 neighbours as bits: bit k-1 is x_k, counter-clockwise from x_1 = east (x_3 = north)."""
    lut1 = np.zeros(256, dtype=bool)
    lut2 = np.zeros(256, dtype=bool)
    for code in range(256):
        x = [(code >> k) & 1 for k in range(8)] + [code & 1]  # x[0..7] = x_1..x_8, x[8] = x_1 again
        crossing = sum(1 for i in range(4) if not x[2 * i] and (x[2 * i + 1] or x[2 * i + 2]))
        n1 = sum(1 for k in range(4) if x[2 * k] or x[2 * k + 1])
        n2 = sum(1 for k in range(4) if x[2 * k + 1] or x[2 * k + 2])
        if crossing != 1 or not 2 <= min(n1, n2) <= 3:
            continue
        x1, x2, x3, x4, x5, x6, x7, x8 = x[:8]
        lut1[code] = not ((x2 or x3 or not x8) and x1)
        lut2[code] = not ((x6 or x7 or not x4) and x5)
    return lut1, lut2


_LUT1, _LUT2 = _thin_luts()
# (dy, dx) of x_1..x_8: east, north-east, north, north-west, west, south-west, south, south-east
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _neighbour_codes(b: np.ndarray) -> np.ndarray:
    p = np.pad(b, 1).astype(np.uint8)
    h, w = b.shape
    code = np.zeros((h, w), dtype=np.uint8)
    for k, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] << k
    return code


def thin(binary: np.ndarray, max_iter: Optional[int] = None) -> np.ndarray:
    """Morphological thinning to 8-connected strokes (``bwmorph(binary, 'thin', Inf)``); returns a bool array."""
    b = np.asarray(binary).astype(bool)
    if b.ndim != 2:
        raise ValueError(f'binary: a 2-d map expected, got shape {b.shape}')
    b = b.copy()
    it = 0
    while max_iter is None or it < max_iter:
        changed = False
        for lut in (_LUT1, _LUT2):
            delete = b & lut[_neighbour_codes(b)]
            if delete.any():
                b &= ~delete
                changed = True
        it += 1
        if not changed:
            break
    return b


# ------------------------------------------------------------------------------------------------ correspondence
def _offsets(radius: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    d2 = dy * dy + dx * dx
    ok = d2 <= radius * radius
    return dy[ok], dx[ok], np.sqrt(d2[ok])


def correspond_pixels(pred: np.ndarray, gt: np.ndarray, max_dist: float = BSDS_MAX_DIST,
                      outlier_cost: float = OUTLIER_COST) -> Tuple[np.ndarray, np.ndarray, float]:
    """One-to-one matching of the pixels of two binary boundary maps (the benchmark's ``correspondPixels``).

    Pixels at most ``max_dist x diagonal`` apart may match at a cost of their distance; an unmatched pixel costs
    ``outlier_cost x`` that distance. The minimum total cost is found exactly (a sparse assignment in which each
    pixel of ``pred`` takes a pixel of ``gt`` or an outlier of its own). Returns ``(match1, match2, cost)``: bool
    maps of the matched pixels of ``pred`` and ``gt``, and the cost of the matched pairs.
    """
    a, b = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f'pred, gt: two 2-d maps of one shape expected, got {a.shape} and {b.shape}')
    h, w = a.shape
    radius = max_dist * math.hypot(h, w)
    match1, match2 = np.zeros_like(a), np.zeros_like(b)
    if not a.any() or not b.any():
        return match1, match2, 0.0
    # candidate pairs (pixel of a, pixel of b within the radius), as MATLAB: every offset in the disc, walked from
    # the side with fewer pixels
    ya, xa = np.nonzero(a)
    yb, xb = np.nonzero(b)
    swap = yb.size < ya.size
    ys, xs = (yb, xb) if swap else (ya, xa)
    ids = np.full(a.shape, -1, dtype=np.int64)
    oy, ox = (ya, xa) if swap else (yb, xb)
    ids[oy, ox] = np.arange(oy.size)
    ii, jj, ww = [], [], []
    for dy, dx, dist in zip(*_offsets(radius)):
        y2, x2 = ys + dy, xs + dx
        idx = np.nonzero((y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w))[0]
        j = ids[y2[idx], x2[idx]]
        hit = j >= 0
        ii.append(idx[hit])
        jj.append(j[hit])
        ww.append(np.full(int(hit.sum()), dist))
    i_all, j_all, w_all = np.concatenate(ii), np.concatenate(jj), np.concatenate(ww)
    if swap:
        i_all, j_all = j_all, i_all
    if i_all.size == 0:
        return match1, match2, 0.0
    # only matchable pixels enter the assignment
    ua, i_node = np.unique(i_all, return_inverse=True)
    ub, j_node = np.unique(j_all, return_inverse=True)
    n1, n2 = ua.size, ub.size
    oc = outlier_cost * radius
    # Each pixel of a takes a pixel of b or its own outlier column. Total cost = sum of matched distances + oc per
    # unmatched pixel on either side = const + sum over a's rows of (d + 1) for a pair, (2 oc + 1) for its outlier
    # (a constant per row changes no choice; LAPJVsp needs non-zero weights).
    rows = np.concatenate([i_node, np.arange(n1)])
    cols = np.concatenate([j_node, n2 + np.arange(n1)])
    cost = np.concatenate([w_all + 1.0, np.full(n1, 2.0 * oc + 1.0)])
    graph = sparse.csr_matrix((cost, (rows, cols)), shape=(n1, n2 + n1))
    r, c = min_weight_full_bipartite_matching(graph)
    real = c < n2
    pa, pb = r[real], c[real]
    match1[ya[ua[pa]], xa[ua[pa]]] = True
    match2[yb[ub[pb]], xb[ub[pb]]] = True
    total = float(np.hypot(ya[ua[pa]] - yb[ub[pb]], xa[ua[pa]] - xb[ub[pb]]).sum())
    return match1, match2, total


# --------------------------------------------------------------------------------------------------- evaluation
def _pyedgeeval_match(pred: np.ndarray, gt: np.ndarray, max_dist: float) -> Tuple[np.ndarray, np.ndarray]:
    from dla_plugins._extras import require

    cp = require('pyEdgeEval._lib', 'boundary', "BoundaryMetric(matcher='pyedgeeval')").correspond_pixels
    m1, m2, _, _ = cp(pred.astype(np.float64), gt.astype(np.float64), max_dist)
    return m1 > 0, m2 > 0


MATCHERS = {'scipy': correspond_pixels, 'pyedgeeval': _pyedgeeval_match}


def evaluate_image(pred: np.ndarray, gts: Sequence[np.ndarray], thresholds: Thresholds = 99,
                   max_dist: float = BSDS_MAX_DIST, nms: bool = True, apply_thin: bool = True,
                   nms_kwargs: Optional[dict] = None, ignore: Optional[np.ndarray] = None,
                   matcher: str = 'scipy') -> np.ndarray:
    """Counts of one image at each threshold: an array (T, 4) of ``cntR, sumR, cntP, sumP``.

    Args:
        pred: Edge strength, H x W, values in [0, 1].
        gts: Boundary maps of the annotators (H x W, non-zero = boundary).
        thresholds: A count (99: the benchmark's) or increasing values in [0, 1].
        max_dist: Matching tolerance as a fraction of the image diagonal.
        nms: Apply :func:`edge_nms` (with ``nms_kwargs``) before thresholding.
        apply_thin: Thin each thresholded map (the benchmark's ``thinpb``).
        ignore: Pixels (H x W, non-zero) where predicted boundaries count neither way.
        matcher: 'scipy' (:func:`correspond_pixels`, exact) or 'pyedgeeval' (the benchmark's CSA code as shipped by
            the pyEdgeEval package; extra ``boundary``).
    """
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f'pred: a 2-d edge map expected, got shape {p.shape}')
    if matcher not in MATCHERS:
        raise ValueError(f'matcher: unknown {matcher!r}; allowed: {list(MATCHERS)}')
    gts = [np.asarray(g).astype(bool) for g in gts]
    for g in gts:
        if g.shape != p.shape:
            raise ValueError(f'gts: every ground truth must have the prediction shape {p.shape}, got {g.shape}')
    if nms:
        p = edge_nms(p, **(nms_kwargs or {}))
    keep = None if ignore is None else ~np.asarray(ignore).astype(bool)
    match = MATCHERS[matcher]
    ts = default_thresholds(thresholds)
    out = np.zeros((ts.size, 4), dtype=np.int64)
    for k, t in enumerate(ts):
        bmap = p >= t
        if apply_thin:
            bmap = thin(bmap)
        if keep is not None:
            bmap &= keep
        acc = np.zeros_like(bmap)
        for g in gts:
            m1, m2 = match(bmap, g, max_dist)[:2]
            acc |= m1
            out[k, 0] += int(m2.sum())
            out[k, 1] += int(g.sum())
        out[k, 2] = int(acc.sum())
        out[k, 3] = int(bmap.sum())
    return out


def _evaluate_job(job: Tuple[tuple, dict]) -> np.ndarray:
    return evaluate_image(*job[0], **job[1])


def evaluate_many(jobs: Sequence[Tuple[tuple, dict]], nproc: int = 1) -> List[np.ndarray]:
    """:func:`evaluate_image` on each ``(args, kwargs)`` job, in ``nproc`` processes when > 1; results in order."""
    if nproc <= 1 or len(jobs) <= 1:
        return [_evaluate_job(j) for j in jobs]
    ctx = multiprocessing.get_context('fork' if 'fork' in multiprocessing.get_all_start_methods() else 'spawn')
    with ctx.Pool(min(nproc, len(jobs))) as pool:
        return pool.map(_evaluate_job, jobs, chunksize=1)


def f_measure(p: Union[float, np.ndarray], r: Union[float, np.ndarray]) -> Union[float, np.ndarray]:
    """Harmonic mean of precision and recall, 0 where both are 0."""
    return 2 * p * r / (p + r + ((p + r) == 0))


def precision_recall(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall from ``cntR, sumR, cntP, sumP`` counts (last axis); 0 where nothing was counted."""
    cnt_r, sum_r, cnt_p, sum_p = (counts[..., i].astype(np.float64) for i in range(4))
    return cnt_p / (sum_p + (sum_p == 0)), cnt_r / (sum_r + (sum_r == 0))


def summarize(per_image: Sequence[np.ndarray], thresholds: Thresholds = 99) -> Dict[str, float]:
    """ODS, OIS and AP (and ODS's threshold, precision, recall) from the (T, 4) counts of every image."""
    if len(per_image) == 0:
        raise ValueError('per_image: no image was evaluated')
    ts = default_thresholds(thresholds)
    counts = np.stack([np.asarray(c) for c in per_image])  # N x T x 4
    if counts.shape[1] != ts.size:
        raise ValueError(f'per_image: counts for {counts.shape[1]} thresholds, but {ts.size} thresholds given')
    p, r = precision_recall(counts.sum(0))
    # ODS: best F over thresholds, linearly interpolated between neighbours (100 steps, MATLAB's linspace(0, 1))
    best = (float(ts[0]), float(p[0]), float(r[0]), float(f_measure(p[0], r[0])))
    d = np.linspace(0, 1, 100)
    for i in range(1, ts.size):
        ti, pi, ri = (v[i] * d + v[i - 1] * (1 - d) for v in (ts, p, r))
        fi = f_measure(pi, ri)
        k = int(np.argmax(fi))
        if fi[k] > best[3]:
            best = (float(ti[k]), float(pi[k]), float(ri[k]), float(fi[k]))
    # OIS: counts pooled at each image's best (first maximal) threshold
    pim, rim = precision_recall(counts)
    pick = np.argmax(f_measure(pim, rim), axis=1)
    p_ois, r_ois = precision_recall(counts[np.arange(counts.shape[0]), pick].sum(0))
    # AP: area under the dataset-level PR curve at recall 0, 0.01, ..., 1 (0 outside the measured recalls)
    ru, first = np.unique(r, return_index=True)
    if ru.size > 1:
        grid = np.linspace(0, 1, 101)
        ap = float(np.interp(grid, ru, p[first], left=0.0, right=0.0).sum() * 0.01)
    else:
        ap = 0.0
    return dict(ODS=best[3], OIS=float(f_measure(p_ois, r_ois)), AP=ap, ODS_threshold=best[0], ODS_precision=best[1],
                ODS_recall=best[2])
