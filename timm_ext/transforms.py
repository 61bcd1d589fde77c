"""The colour augmentations of the paper's fine-grained recipe (DLA §5.2), spliced into timm's transform factory.

§5.2 trains with "AlexNet-style PCA-based noise (Krizhevsky et al. 2012) and the photometric distortions from
(Howard 2013)" and "the same ... mean, std, eigenvalues and eigenvectors as ImageNet Classification". Neither paper
prints the ImageNet constants; the ones every PyTorch/Torch ImageNet pipeline uses come from fb.resnet.torch
(``datasets/imagenet.lua``, "Computed from random subset of ImageNet training images"), and so do the definitions
followed here (``datasets/transforms.lua``: ``Lighting``, ``ColorJitter`` = ``Brightness``/``Contrast``/``Saturation``
in random order). Both act on float RGB tensors in [0, 1] after ``ToTensor`` and before ``Normalize``, without clamping.

timm has neither: :func:`with_colour_noise` inserts them into a transform built by ``timm.data.create_transform``
(directly, or through ``create_loader``) just before its ``Normalize``.
"""
from typing import Sequence, Tuple

import torch
from timm.data import create_transform
from torchvision import transforms

__all__ = ['IMAGENET_PCA_EIGVAL', 'IMAGENET_PCA_EIGVEC', 'GRAYSCALE_WEIGHTS', 'Lighting', 'PhotometricDistortion',
           'with_colour_noise', 'create_paper_transform']

# fb.resnet.torch, datasets/imagenet.lua, ``pca.eigval`` and ``pca.eigvec`` (columns are the eigenvectors, in the
# order of the eigenvalues; RGB rows). The same numbers as in the ImageNet pipelines that copied them since.
IMAGENET_PCA_EIGVAL: Tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC: Tuple[Tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# fb.resnet.torch, datasets/transforms.lua, ``grayscale``: ITU-R BT.601 luma weights for R, G, B.
GRAYSCALE_WEIGHTS: Tuple[float, float, float] = (0.299, 0.587, 0.114)


def _check_image(img: torch.Tensor, who: str) -> None:
    if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3 or not img.is_floating_point():
        what = f'{tuple(img.shape)} {img.dtype}' if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(f'{who}: expects a float RGB tensor of shape (3, H, W) (after ToTensor), got {what}')


class Lighting:
    """AlexNet-style PCA lighting noise: adds ``eigvec @ (alpha * eigval)`` to every pixel, ``alpha ~ N(0, alphastd²)``.

    One draw of ``alpha`` (3 numbers) per image, so the shift is the same for all pixels; its covariance over images
    is ``alphastd² · eigvec · diag(eigval²) · eigvecᵀ`` (fb.resnet.torch's ``Lighting``). Draws from torch's global
    RNG (restored by ``--resume``).

    Args:
        alphastd: standard deviation of ``alpha`` (0.1 in fb.resnet.torch and the DLA recipe; 0 = identity).
        eigval: the three ``eigval`` (default: ImageNet's, :data:`IMAGENET_PCA_EIGVAL`).
        eigvec: 3x3, columns are the eigenvectors (default: ImageNet's, :data:`IMAGENET_PCA_EIGVEC`).
    """

    def __init__(self, alphastd: float = 0.1, eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC) -> None:
        if not alphastd >= 0:
            raise ValueError(f'lighting: alphastd must be >= 0, got {alphastd!r}')
        self.alphastd = float(alphastd)
        self.eigval = torch.tensor(eigval, dtype=torch.float64)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float64)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise ValueError(f'lighting: eigval must have 3 values and eigvec be 3x3, got {tuple(self.eigval.shape)} '
                             f'and {tuple(self.eigvec.shape)}')

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image(img, 'Lighting')
        if self.alphastd == 0:
            return img
        alpha = torch.randn(3, dtype=torch.float64) * self.alphastd
        rgb = self.eigvec @ (alpha * self.eigval)
        return img + rgb.to(img.dtype).view(3, 1, 1)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(alphastd={self.alphastd}, eigval={tuple(self.eigval.tolist())})'


class PhotometricDistortion:
    """Howard (2013)'s brightness, contrast and saturation changes, as fb.resnet.torch's ``ColorJitter`` does them.

    Each enabled change blends the image with a reference, ``f · img + (1 - f) · ref``, ``f ~ U(1 - v, 1 + v)``:
    brightness with black (``ref = 0``), contrast with the mean of its grayscale, saturation with its grayscale
    (:data:`GRAYSCALE_WEIGHTS`). The enabled changes run in a random order; no clamping. Draws from torch's global RNG.

    Args:
        brightness: ``v`` of the brightness change (0.4 in fb.resnet.torch and the DLA recipe; 0 = off).
        contrast: ``v`` of the contrast change.
        saturation: ``v`` of the saturation change.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4) -> None:
        for name, v in (('brightness', brightness), ('contrast', contrast), ('saturation', saturation)):
            if not 0 <= v <= 1:
                raise ValueError(f'photometric: {name} must be in [0, 1], got {v!r}')
        self.strengths = dict(brightness=float(brightness), contrast=float(contrast), saturation=float(saturation))
        self._gray = torch.tensor(GRAYSCALE_WEIGHTS).view(3, 1, 1)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image(img, 'PhotometricDistortion')
        enabled = [(k, v) for k, v in self.strengths.items() if v > 0]
        for i in torch.randperm(len(enabled)).tolist():
            kind, v = enabled[i]
            f = 1.0 + float(torch.empty(()).uniform_(-v, v))
            if kind == 'brightness':
                ref = torch.zeros((), dtype=img.dtype)
            else:
                gray = (img * self._gray.to(img.dtype)).sum(0, keepdim=True)
                ref = gray.mean() if kind == 'contrast' else gray
            img = f * img + (1.0 - f) * ref
        return img

    def __repr__(self) -> str:
        return f'{type(self).__name__}({", ".join(f"{k}={v}" for k, v in self.strengths.items())})'


def with_colour_noise(transform: transforms.Compose, photometric: float = 0.0,
                      lighting: float = 0.0) -> transforms.Compose:
    """``transform`` (a timm ``create_transform`` training pipeline) with :class:`PhotometricDistortion` (all three
    strengths = ``photometric``) and then :class:`Lighting` (``alphastd = lighting``) inserted before its
    ``Normalize``, where fb.resnet.torch applies them. Zero strengths add nothing.

    Raises:
        ValueError: ``transform`` has no ``Normalize`` step (e.g. built for timm's prefetcher, which normalises on
            the device).
    """
    steps = list(transform.transforms)
    at = next((i for i, t in enumerate(steps) if isinstance(t, transforms.Normalize)), None)
    if at is None:
        names = ', '.join(type(t).__name__ for t in steps)
        raise ValueError(f'transform: the colour noise goes before Normalize, and this pipeline has none (built with '
                         f'use_prefetcher=True or normalize=False?); steps: {names}')
    extra = ([PhotometricDistortion(photometric, photometric, photometric)] if photometric > 0 else []) + (
        [Lighting(lighting)] if lighting > 0 else [])
    return transforms.Compose(steps[:at] + extra + steps[at:])


def create_paper_transform(input_size: int, photometric: float = 0.4, lighting: float = 0.1,
                           **create_transform_kwargs) -> transforms.Compose:
    """timm's training transform (``timm.data.create_transform(input_size, is_training=True, **kwargs)``: random
    resized crop, flip, ...) with the paper's colour noise, see :func:`with_colour_noise`."""
    base = create_transform(input_size, is_training=True, **create_transform_kwargs)
    return with_colour_noise(base, photometric, lighting)
