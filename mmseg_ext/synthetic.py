"""Synthetic shapes written in the Cityscapes and CamVid directory layouts, for tests and the demo.

Each image holds shapes from :func:`dla_plugins.data.synthetic.render_shapes` on a noisy background; label ``k`` is the
shape mask value (0 background, 1-4 square/disk/triangle/plus). In Cityscapes train ids these are road, sidewalk,
building, wall, fence; in CamVid ids Sky, Building, Pole, Road, Sidewalk. CamVid labels also get a 2-pixel void
(255) border, so the ignore label is exercised.
"""
import os
from typing import Dict, Tuple

import cv2
import numpy as np

from dla_plugins.data.synthetic import render_shapes

__all__ = ['write_cityscapes_layout', 'write_camvid_layout', 'NUM_SHAPE_LABELS']

NUM_SHAPE_LABELS = 5  # background + 4 shapes


def _write(path: str, array: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array):
        raise OSError(f'cannot write {path}')


def write_cityscapes_layout(root: str, splits: Dict[str, int], size: Tuple[int, int] = (64, 128),
                            max_objects: int = 3, seed: int = 0, city: str = 'shapesville') -> str:
    """Write ``splits`` (e.g. ``{'train': 16, 'val': 4}``) as ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` under ``root``; returns ``root``."""
    for k, (split, n) in enumerate(sorted(splits.items())):
        for i, s in enumerate(render_shapes(n, size, max_objects=max_objects, seed=seed + 1000 * k)):
            stem = f'{city}_{k:06d}_{i:06d}'
            _write(os.path.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'),
                   s.image.numpy()[:, :, ::-1])
            _write(os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelTrainIds.png'),
                   s.mask.numpy().astype(np.uint8))
    return root


def write_camvid_layout(root: str, splits: Dict[str, int], size: Tuple[int, int] = (64, 96), max_objects: int = 3,
                        seed: int = 0) -> str:
    """Write ``splits`` as ``images/<split>/*.png`` and ``annotations/<split>/*.png`` (void 255) under ``root``."""
    for k, (split, n) in enumerate(sorted(splits.items())):
        for i, s in enumerate(render_shapes(n, size, max_objects=max_objects, seed=seed + 1000 * k)):
            label = s.mask.numpy().astype(np.uint8)
            label[:2, :] = label[-2:, :] = 255
            label[:, :2] = label[:, -2:] = 255
            name = f'{split}_{i:05d}.png'
            _write(os.path.join(root, 'images', split, name), s.image.numpy()[:, :, ::-1])
            _write(os.path.join(root, 'annotations', split, name), label)
    return root
