"""The paper's training recipes as data: ``python -m timm_ext.train --recipe paper-imagenet | paper-finegrained``.

A recipe is a table of ``timm_ext.train`` flag values (argparse ``dest`` names). It replaces the parser's defaults,
so every flag given on the command line still wins; the effective values are printed at the start of a run and saved
as ``OUTPUT/config.json`` beside the checkpoints.

Sources (Yu et al., *Deep Layer Aggregation*, CVPR 2018):

- ``paper-imagenet`` (§5.1): "SGD for 120 epochs with momentum 0.9, weight decay 1e-4 and batch size 256 ... learning
  rate 0.1, which is reduced by 10 every 30 epochs ... scale and aspect ratio augmentation (Xie et al. 2017), but not
  color perturbation"; evaluation: "resized so that the shorter side has 256 pixels ... central 224 x 224 crops".
- ``paper-finegrained`` (§5.2): "Inception-style scale and aspect ratio augmentation, AlexNet-style PCA-based noise
  and the photometric distortions from (Howard 2013) ... SGD with a mini-batch size of 64, while the learning rate
  starts from 0.01 and is then divided by 10 every 50 epochs, for 110 epochs in total ... the same momentum, weight
  decay, mean, std, eigenvalues and eigenvectors as ImageNet Classification"; "224 x 224 in resized 256 x 256 images
  for [Food-101] and 448 x 448 in resized 512 x 512 for the rest".

What the paper leaves open, and the value chosen (each a flag):

- the crop: Inception-style random-resized crops of area 8-100 % and aspect ratio 3/4-4/3 (fb.resnet.torch's
  ``RandomSizedCrop``, which Xie et al. train with) straight to the crop size; evaluation resizes the shorter side
  to crop / 0.875 (256, 512) and takes the central crop, as the authors' ``classify.py`` does (``--scale-size``,
  ``--crop-size``);
- the colour noise: fb.resnet.torch's brightness, contrast and saturation changes of strength 0.4 and PCA lighting
  of alphastd 0.1 (the authors' ``classify.py --random-color`` uses the same strengths, with sharpness in place of
  saturation); see :mod:`timm_ext.transforms`;
- weight decay on every parameter (``torch.optim.SGD(model.parameters())`` in the authors' code), plain momentum
  (no Nesterov), no label smoothing, warm-up, dropout or EMA: the paper names none;
- fine-grained training starts from the model's ImageNet weights (``--pretrained``): the paper does not say so, but
  its learning rate (a tenth of ImageNet's) and the baselines it compares with (Cui et al. 2017) fine-tune
  ImageNet models. ``--no-pretrained`` trains from scratch.
- batch sizes are the paper's global ones; ``-b`` is per process, so with N processes pass ``-b 256/N``
  (``config.json`` records ``global_batch_size``).
"""
from typing import Any, Dict, Optional, Tuple

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ['RECIPES', 'DATASET_OVERRIDES', 'recipe_defaults']

_COMMON: Dict[str, Any] = dict(
    opt='momentum', momentum=0.9, weight_decay=1e-4, wd_bias_norm=True,
    sched='step', decay_rate=0.1, warmup_epochs=0, smoothing=0.0, drop=0.0, model_ema=False,
    scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5, color_jitter=0.0, interpolation='bilinear', crop_pct=0.875,
    mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,  # (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
)

RECIPES: Dict[str, Dict[str, Any]] = {
    'paper-imagenet': dict(_COMMON, epochs=120, batch_size=256, lr=0.1, decay_epochs=30, img_size=224,
                           photometric=0.0, lighting=0.0, pretrained=False),
    'paper-finegrained': dict(_COMMON, epochs=110, batch_size=64, lr=0.01, decay_epochs=50, img_size=448,
                              photometric=0.4, lighting=0.1, pretrained=True),
}

# (recipe, dataset) -> values that differ for that dataset
DATASET_OVERRIDES: Dict[Tuple[str, str], Dict[str, Any]] = {
    ('paper-finegrained', 'food101'): dict(img_size=224),  # "224 x 224 in resized 256 x 256 images" for Food-101
}


def recipe_defaults(recipe: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """The flag values of ``recipe`` for ``dataset`` (``timm_ext.train`` argparse ``dest`` names).

    Raises:
        ValueError: unknown recipe.
    """
    if recipe not in RECIPES:
        raise ValueError(f'recipe: unknown {recipe!r}; allowed: {list(RECIPES)}')
    return dict(RECIPES[recipe], **DATASET_OVERRIDES.get((recipe, dataset or 'imagefolder'), {}))
