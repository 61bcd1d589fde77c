"""Synthetic boundary data in the BSDS500 layout (``.mat`` ground truth of several annotators) and HED pair lists.

Each image holds a few filled shapes (ellipses, rectangles, triangles) on a noisy background crossed by thin
high-contrast strokes that no annotator marks: a gradient detector answers to the strokes, a trained model learns
to ignore them. Five annotators segment the image; their ``Boundaries`` follow the BSDS convention (a pixel whose
segment differs from its east, south or south-east neighbour). Annotators 0-2 agree, annotator 3 is one pixel off
on every boundary, annotator 4 misses one shape and adds a region of its own, so the fraction of annotators per
pixel takes the values 0, 1/5, 2/5, ... 1 and exercises the consensus rule and its ignore band.
"""
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np
from scipy.io import savemat

__all__ = ['seg_to_boundaries', 'render_boundary_scene', 'write_bsds_layout', 'write_hed_pair_list',
           'NUM_ANNOTATORS']

NUM_ANNOTATORS = 5


def seg_to_boundaries(seg: np.ndarray) -> np.ndarray:
    """Boundary map of a segmentation, the BSDS convention: a pixel whose label differs from its east, south or
    south-east neighbour (1 pixel wide, on the upper/left side of each border)."""
    b = np.zeros(seg.shape, dtype=bool)
    b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    b[:-1, :] |= seg[:-1, :] != seg[1:, :]
    b[:-1, :-1] |= seg[:-1, :-1] != seg[1:, 1:]
    return b


def _shape(seg: np.ndarray, rng: np.random.Generator, value: int) -> None:
    h, w = seg.shape
    cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
    ry, rx = rng.uniform(0.12, 0.28) * h, rng.uniform(0.12, 0.28) * w
    kind = rng.integers(3)
    if kind == 0:
        cv2.ellipse(seg, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, value, -1)
    elif kind == 1:
        cv2.rectangle(seg, (int(cx - rx), int(cy - ry)), (int(cx + rx), int(cy + ry)), value, -1)
    else:
        pts = np.array([[cx, cy - ry], [cx - rx, cy + ry], [cx + rx, cy + ry]], dtype=np.int32)
        cv2.fillPoly(seg, [pts], value)


def render_boundary_scene(size: Tuple[int, int], rng: np.random.Generator, num_shapes: int = 3
                          ) -> Tuple[np.ndarray, List[np.ndarray], List[np.ndarray]]:
    """One image (H x W x 3 uint8, BGR) with the segmentations and boundary maps of :data:`NUM_ANNOTATORS`."""
    h, w = size
    seg = np.zeros((h, w), dtype=np.int32)
    for k in range(num_shapes):
        _shape(seg, rng, k + 1)
    base = rng.uniform(90, 160, size=3)
    colours = [base] + [np.clip(base + rng.choice([-1, 1], 3) * rng.uniform(35, 60, 3), 0, 255)
                        for _ in range(num_shapes)]
    img = np.zeros((h, w, 3), dtype=np.float64)
    for k, c in enumerate(colours):
        img[seg == k] = c
    img += rng.normal(0, 8, img.shape)
    for _ in range(int(0.25 * (h + w) / 8)):  # strokes nobody annotates
        p0 = rng.integers(0, [w, h])
        p1 = np.clip(p0 + rng.integers(-w // 4, w // 4 + 1, 2), 0, [w - 1, h - 1])
        tone = float(rng.choice([20.0, 235.0]))
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), (tone, tone, tone), 1)
    image = np.clip(img, 0, 255).astype(np.uint8)
    segs = [seg.copy() for _ in range(3)]
    segs.append(np.roll(seg, 1, axis=1))  # one pixel off
    own = seg.copy()
    own[own == num_shapes] = 0  # misses the last shape
    _shape(own, rng, num_shapes + 1)  # and adds a region of its own
    segs.append(own)
    return image, segs, [seg_to_boundaries(s) for s in segs]


def _ground_truth_cell(segs: List[np.ndarray], bounds: List[np.ndarray]) -> np.ndarray:
    cell = np.empty((1, len(segs)), dtype=object)
    for i, (s, b) in enumerate(zip(segs, bounds)):
        cell[0, i] = {'Segmentation': (s + 1).astype(np.uint16), 'Boundaries': b.astype(np.uint8)}
    return cell


def write_bsds_layout(root: str, splits: Dict[str, int], size: Tuple[int, int] = (96, 96), num_shapes: int = 3,
                      seed: int = 0) -> str:
    """Write ``splits`` (e.g. ``{'train': 16, 'test': 4}``) as ``images/<split>/<id>.jpg`` and
    ``groundTruth/<split>/<id>.mat`` (the BSR layout; scipy writes MATLAB v5 files) under ``root``; returns it."""
    for k, (split, n) in enumerate(sorted(splits.items())):
        rng = np.random.default_rng(seed + 1000 * k)
        os.makedirs(os.path.join(root, 'images', split), exist_ok=True)
        os.makedirs(os.path.join(root, 'groundTruth', split), exist_ok=True)
        for i in range(n):
            image, segs, bounds = render_boundary_scene(size, rng, num_shapes)
            stem = f'{k + 1}{i:05d}'
            if not cv2.imwrite(os.path.join(root, 'images', split, f'{stem}.jpg'), image,
                               [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f'cannot write {stem}.jpg under {root}')
            savemat(os.path.join(root, 'groundTruth', split, f'{stem}.mat'),
                    {'groundTruth': _ground_truth_cell(segs, bounds)})
    return root


def write_hed_pair_list(bsds_root: str, split: str, out_root: str, list_name: str = 'train_pair.lst') -> str:
    """Re-write a split of a BSDS layout as HED-BSDS does: ``train/aug_data/1.0_0/<id>.jpg`` images, gray
    ``train/aug_gt/1.0_0/<id>.png`` labels (fraction of annotators x 255, rounded) and the pair list; returns its
    path."""
    from .bsds import read_bsds_boundaries

    lines = []
    for name in sorted(os.listdir(os.path.join(bsds_root, 'images', split))):
        stem = os.path.splitext(name)[0]
        img = cv2.imread(os.path.join(bsds_root, 'images', split, name))
        fraction = np.mean(read_bsds_boundaries(os.path.join(bsds_root, 'groundTruth', split, f'{stem}.mat')), axis=0)
        rel_img, rel_gt = f'train/aug_data/1.0_0/{stem}.jpg', f'train/aug_gt/1.0_0/{stem}.png'
        for rel, data in ((rel_img, img), (rel_gt, np.round(fraction * 255).astype(np.uint8))):
            os.makedirs(os.path.dirname(os.path.join(out_root, rel)), exist_ok=True)
            if not cv2.imwrite(os.path.join(out_root, rel), data):
                raise OSError(f'cannot write {rel} under {out_root}')
        lines.append(f'{rel_img} {rel_gt}\n')
    path = os.path.join(out_root, list_name)
    with open(path, 'w') as f:
        f.writelines(lines)
    return path
