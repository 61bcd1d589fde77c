"""CenterNet's input pipeline as detectron2 augmentations: the centre/scale affine of ``CTDetDataset`` (training:
random scale 0.6-1.3 and centre, flip 0.5) and of its detector's ``pre_process`` (fixed input size or ``keep_res``),
and its colour augmentation (brightness, contrast, saturation in random order, then PCA lighting with COCO's
eigenvectors). The maths follow xingyizhou/CenterNet (``utils/image.py``, ``datasets/sample/ctdet.py``,
``detectors/base_detector.py``; proven equal by ``tests/golden/data/ctdet``); images are BGR uint8 HWC arrays."""
import random
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from detectron2.data import transforms as T

__all__ = ['CENTERNET_MEAN', 'CENTERNET_STD', 'affine_matrix', 'CenterAffineTransform', 'CenterAffine',
           'color_augment', 'SCALES']

# CenterNet's COCO statistics (datasets/dataset/coco.py), BGR order as cv2 reads images.
CENTERNET_MEAN = (0.40789654, 0.44719302, 0.47026115)
CENTERNET_STD = (0.28863828, 0.27408164, 0.27809835)
_EIG_VAL = np.array([0.2141788, 0.01817699, 0.00341571], dtype=np.float32)
_EIG_VEC = np.array([[-0.58752847, -0.69563484, 0.41340352], [-0.5832747, 0.00994535, -0.81221408],
                     [-0.56089297, 0.71832671, 0.41158938]], dtype=np.float32)
SCALES = tuple(np.arange(0.6, 1.4, 0.1))  # CenterNet's random scales: 0.6 .. 1.3
Scale = Union[float, Tuple[float, float]]


def affine_matrix(center: Sequence[float], scale: Scale, output_size: Tuple[int, int], inv: bool = False
                  ) -> np.ndarray:
    """CenterNet's ``get_affine_transform(center, scale, 0, output_size, inv)``: the 2x3 matrix (float64) mapping the
    ``scale``-wide square (or ``(w, h)`` box: only ``w`` counts) around ``center`` onto ``output_size`` (w, h)."""
    src_w = float(scale[0] if isinstance(scale, (tuple, list, np.ndarray)) else scale)
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = np.asarray(center, dtype=np.float32) + np.array([0, src_w * -0.5], dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5], np.float32) + np.array([0, dst_w * -0.5], np.float32)
    for pts in (src, dst):  # the third point: the first rotated by 90 degrees around the second
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], dtype=np.float32)
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


class CenterAffineTransform(T.Transform):
    """An optional horizontal flip (CenterNet's: pixel ``x`` -> ``width - 1 - x``) then CenterNet's affine of
    ``center``/``scale`` onto ``size`` (w, h), bilinear (``cv2.warpAffine``, zero border)."""

    def __init__(self, center: Sequence[float], scale: Scale, size: Tuple[int, int], flip_width: Optional[int] = None):
        super().__init__()
        self.center = np.asarray(center, dtype=np.float32)
        self.scale = scale
        self.size = (int(size[0]), int(size[1]))
        self.flip_width = flip_width
        self.matrix = affine_matrix(self.center, scale, self.size)

    def at_stride(self, stride: int) -> 'CenterAffineTransform':
        """The same crop onto the ``stride``-times smaller map (CenterNet's output affine for the targets)."""
        return CenterAffineTransform(self.center, self.scale, (self.size[0] // stride, self.size[1] // stride),
                                     self.flip_width)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if self.flip_width is not None:
            img = np.ascontiguousarray(img[:, ::-1])
        return cv2.warpAffine(img, self.matrix, self.size, flags=cv2.INTER_LINEAR)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, dtype=np.float64).copy()
        if self.flip_width is not None:
            coords[:, 0] = self.flip_width - coords[:, 0] - 1
        return coords @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse_coords(self, coords: np.ndarray) -> np.ndarray:
        """Map points of the output back to the input image (no flip: test transforms), as CenterNet's
        ``transform_preds`` does."""
        inv = affine_matrix(self.center, self.scale, self.size, inv=True)
        return np.asarray(coords, dtype=np.float64) @ inv[:, :2].T + inv[:, 2]

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        raise NotImplementedError('CenterAffineTransform: segmentation masks are not supported (boxes only)')


def _border(border: int, size: int) -> int:
    i = 1
    while size - border // i <= border // i:
        i *= 2
    return border // i


class CenterAffine(T.Augmentation):
    """CenterNet's input affine onto ``size`` x ``size``.

    Test (``train=False``): the image's centre and its longer side (``keep_res``: no scaling, padded to
    ``(side | pad) + 1``). Training: ``random_crop`` draws the scale from :data:`SCALES` and the centre at least
    128 px (halved until it fits) from the borders; otherwise the centre moves by ``shift`` and the scale by
    ``scale`` (Gaussian, clipped, CenterNet's ``--not_rand_crop``); then a flip with probability ``flip``.
    """

    def __init__(self, size: int = 512, train: bool = False, keep_res: bool = False, pad: int = 31,
                 random_crop: bool = True, scale: float = 0.4, shift: float = 0.1, flip: float = 0.5):
        super().__init__()
        if not isinstance(size, int) or isinstance(size, bool) or size < 32 or size % 32:
            raise ValueError(f'size: {size!r}; allowed: a multiple of 32 >= 32')
        for name, value in (('scale', scale), ('shift', shift), ('flip', flip)):
            if not 0 <= value <= 1:
                raise ValueError(f'{name}: {value!r}; allowed: a float in [0, 1]')
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> CenterAffineTransform:
        height, width = image.shape[:2]
        if not self.train:
            if self.keep_res:
                size = ((width | self.pad) + 1, (height | self.pad) + 1)
                return CenterAffineTransform((width // 2, height // 2), size, size)
            return CenterAffineTransform((width / 2., height / 2.), max(height, width) * 1.0, (self.size, self.size))
        c = np.array([width / 2., height / 2.], dtype=np.float32)
        s: float = max(height, width) * 1.0
        if self.random_crop:
            s = s * np.random.choice(SCALES)
            c[0] = np.random.randint(low=_border(128, width), high=width - _border(128, width))
            c[1] = np.random.randint(low=_border(128, height), high=height - _border(128, height))
        else:
            c[0] += s * np.clip(np.random.randn() * self.shift, -2 * self.shift, 2 * self.shift)
            c[1] += s * np.clip(np.random.randn() * self.shift, -2 * self.shift, 2 * self.shift)
            s = s * np.clip(np.random.randn() * self.scale + 1, 1 - self.scale, 1 + self.scale)
        flip = None
        if np.random.random() < self.flip:
            flip, c[0] = width, width - c[0] - 1
        return CenterAffineTransform(c, s, (self.size, self.size), flip)


def color_augment(image: np.ndarray, rng: np.random.RandomState, var: float = 0.4, alphastd: float = 0.1) -> None:
    """CenterNet's ``color_aug`` in place on a float32 BGR image in [0, 1]: brightness, contrast and saturation
    (each ``1 + U(-var, var)``) in random order around the grey image, then PCA lighting (``alphastd``)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    grey_mean = grey.mean()

    def brightness():
        image[...] *= 1. + rng.uniform(low=-var, high=var)

    def contrast():
        alpha = 1. + rng.uniform(low=-var, high=var)
        image[...] = image * alpha + grey_mean * (1 - alpha)

    def saturation():
        alpha = 1. + rng.uniform(low=-var, high=var)
        image[...] = image * alpha + grey[:, :, None] * (1 - alpha)

    steps = [brightness, contrast, saturation]
    random.shuffle(steps)
    for step in steps:
        step()
    image += np.dot(_EIG_VEC, _EIG_VAL * rng.normal(scale=alphastd, size=(3,)))
