"""The paper's colour noise (timm_ext.transforms): the PCA lighting noise has the covariance its definition implies
with the ImageNet constants, the photometric distortions blend as fb.resnet.torch's, and both sit before timm's
Normalize in a ``create_transform`` pipeline."""
import pytest
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms

from timm_ext.transforms import (
    GRAYSCALE_WEIGHTS,
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    Lighting,
    PhotometricDistortion,
    create_paper_transform,
    with_colour_noise,
)


def test_imagenet_constants_are_fb_resnet_torch():
    """The published values (fb.resnet.torch datasets/imagenet.lua), and the eigenvectors are orthonormal to the
    4 decimals printed."""
    assert IMAGENET_PCA_EIGVAL == (0.2175, 0.0188, 0.0045)
    assert IMAGENET_PCA_EIGVEC == ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
    v = torch.tensor(IMAGENET_PCA_EIGVEC, dtype=torch.float64)
    assert torch.allclose(v.T @ v, torch.eye(3, dtype=torch.float64), atol=2e-4)


def test_lighting_noise_covariance():
    """noise = V diag(eigval) alpha, alpha ~ N(0, s² I)  =>  Cov(noise) = s² V diag(eigval²) Vᵀ, measured on 40,000
    draws; the same shift is added to every pixel."""
    torch.manual_seed(0)
    s, n = 0.1, 40_000
    light = Lighting(s)
    img = torch.rand(3, 4, 5)
    shifts = torch.empty(n, 3, dtype=torch.float64)
    for i in range(n):
        out = light(img)
        delta = (out - img).double()
        if i < 50:  # one shift per image, the same for all pixels
            assert torch.allclose(delta, delta[:, :1, :1].expand_as(delta), atol=1e-6)
        shifts[i] = delta[:, 0, 0]
    v = torch.tensor(IMAGENET_PCA_EIGVEC, dtype=torch.float64)
    lam = torch.tensor(IMAGENET_PCA_EIGVAL, dtype=torch.float64)
    expected = s ** 2 * v @ torch.diag(lam ** 2) @ v.T
    measured = torch.cov(shifts.T)
    assert shifts.mean(0).abs().max() < 4 * s * lam[0] / n ** 0.5  # zero mean
    assert torch.allclose(measured, expected, rtol=0, atol=0.03 * expected.abs().max()), (measured, expected)
    # every direction, the weakest included: in the eigenbasis (whitened by V⁻¹ and 1/eigval) the draws are N(0, s²)
    whitened = torch.linalg.solve(v, shifts.T).T / lam
    assert torch.allclose(torch.cov(whitened.T) / s ** 2, torch.eye(3, dtype=torch.float64), atol=0.04)
    # a wrong scaling (eigval instead of eigval², or a missing alphastd) would be far outside these bounds
    assert not torch.allclose(measured, s ** 2 * v @ torch.diag(lam) @ v.T, atol=0.03 * expected.abs().max())


def test_lighting_off_and_bad_input():
    img = torch.rand(3, 2, 2)
    assert Lighting(0.0)(img) is img
    with pytest.raises(ValueError) as e:
        Lighting(-0.1)
    assert str(e.value) == 'lighting: alphastd must be >= 0, got -0.1'
    with pytest.raises(ValueError) as e:
        Lighting(0.1)(torch.zeros(1, 4, 4))
    assert str(e.value) == ('Lighting: expects a float RGB tensor of shape (3, H, W) (after ToTensor), got '
                            '(1, 4, 4) torch.float32')


def test_photometric_distortions_blend_as_fb_resnet_torch():
    torch.manual_seed(1)
    img = torch.rand(3, 6, 7, dtype=torch.float64)  # float64: the ratios below are exact to ~1e-12
    gray = (img * torch.tensor(GRAYSCALE_WEIGHTS, dtype=torch.float64).view(3, 1, 1)).sum(0, keepdim=True)
    for _ in range(20):
        out = PhotometricDistortion(0.4, 0, 0)(img)  # brightness: a scale in [0.6, 1.4]
        f = (out / img).flatten()
        assert torch.allclose(f, f[:1].expand_as(f), atol=1e-9) and 0.6 <= f[0] <= 1.4
        out = PhotometricDistortion(0, 0.4, 0)(img)  # contrast: towards the grayscale mean, which stays put
        f = ((out - gray.mean()) / (img - gray.mean())).flatten()
        assert torch.allclose(f, f[:1].expand_as(f), atol=1e-9) and 0.6 <= f[0] <= 1.4
        out = PhotometricDistortion(0, 0, 0.4)(img)  # saturation: towards each pixel's gray, which stays put
        f = ((out - gray) / (img - gray)).flatten()
        assert torch.allclose(f, f[:1].expand_as(f), atol=1e-9) and 0.6 <= f[0] <= 1.4
    flat = gray.expand(3, -1, -1).clone()  # a gray image keeps its saturation
    assert torch.allclose(PhotometricDistortion(0, 0, 0.4)(flat), flat, atol=1e-12)
    # all three, random order: factors spread over the whole range, the mean brightness stays 1 on average
    means = torch.stack([PhotometricDistortion(0.4, 0.4, 0.4)(img).mean() / img.mean() for _ in range(2000)])
    assert abs(means.mean().item() - 1) < 0.02 and means.min() < 0.75 and means.max() > 1.3
    with pytest.raises(ValueError) as e:
        PhotometricDistortion(brightness=1.5)
    assert str(e.value) == 'photometric: brightness must be in [0, 1], got 1.5'


def test_colour_noise_goes_before_timm_normalize():
    base = create_transform(32, is_training=True, color_jitter=None)
    tf = with_colour_noise(base, photometric=0.4, lighting=0.1)
    names = [type(t).__name__ for t in tf.transforms]
    at = names.index('Normalize')
    assert names[at - 2:at + 1] == ['PhotometricDistortion', 'Lighting', 'Normalize'] and len(names) == len(
        base.transforms) + 2
    assert [type(t).__name__ for t in with_colour_noise(base).transforms] == [type(t).__name__ for t in base.transforms]
    paper = create_paper_transform(32, scale=(0.08, 1.0), color_jitter=None)
    torch.manual_seed(0)
    out = paper(Image.new('RGB', (48, 40), (120, 60, 30)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    with pytest.raises(ValueError, match=r'transform: the colour noise goes before Normalize, and this pipeline has '
                                         r'none \(built with use_prefetcher=True or normalize=False\?\); steps: '
                                         r'RandomResizedCropAndInterpolation, RandomHorizontalFlip, MaybePILToTensor'):
        with_colour_noise(create_transform(32, is_training=True, color_jitter=None, use_prefetcher=True), 0.4, 0.1)
    assert isinstance(tf.transforms[-1], transforms.Normalize)
