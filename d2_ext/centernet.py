"""CenterNet's ctdet detector ("Objects as Points") as a detectron2 meta-architecture, ``DLAPCenterNet``
(``MODEL.META_ARCHITECTURE: "DLAPCenterNet"``; a name no other project registers): any backbone whose
``MODEL.DLAP.CENTERNET.IN_FEATURE`` is at stride 4 (CenterNet's deformable DLA-Up: ``build_dlap_up_backbone`` with
``MODEL.DLAP.NECK.FLAVOR: centernet``), CenterNet's heads, targets, loss and decoding (:mod:`dla_plugins.centernet`).

CenterNet's input pipeline runs inside the model, so detectron2's own tools and ``DatasetMapper`` feed it unchanged
(set ``INPUT.MIN_SIZE_TRAIN: (0,)``, ``INPUT.MIN_SIZE_TEST: 0``, ``INPUT.RANDOM_FLIP: none``: images arrive at their
own size): training draws CenterNet's random affine, flip and colour augmentation per image
(:mod:`d2_ext.centernet_data`); inference applies its test affine (``INPUT_SIZE`` or ``KEEP_RES``) and maps the top
``K`` detections back to the image given, then ``detector_postprocess`` resizes to ``height``/``width`` and clips.
"""
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone, detector_postprocess
from detectron2.structures import Boxes, Instances

from dla_plugins.centernet import CenterNetHeads, ctdet_decode, ctdet_loss, ctdet_targets
from dla_plugins.checkpoint import CheckpointError
from dla_plugins.checkpoint.guard import pending_file
from dla_plugins.detector import last_conv_name

from .centernet_data import CenterAffine, CenterAffineTransform, color_augment

__all__ = ['DLAPCenterNet']

_logger = logging.getLogger('detectron2.d2_ext.centernet')
_KEY = 'MODEL.DLAP.CENTERNET'


@META_ARCH_REGISTRY.register()
class DLAPCenterNet(nn.Module):
    """CenterNet on a detectron2 backbone: ``heads`` (``hm``: ``num_classes``, ``wh``: 2, ``reg``: 2) on the
    stride-4 feature ``in_feature``; training returns ``loss_hm``, ``loss_wh``, ``loss_off`` (weighted: their sum is
    CenterNet's ``loss``), inference the top ``K`` detections above ``score_thresh`` per image."""

    @configurable
    def __init__(self, *, backbone: Backbone, in_feature: str, num_classes: int, pixel_mean: Tuple[float, ...],
                 pixel_std: Tuple[float, ...], head_conv: int = 256, final_kernel: int = 1, input_size: int = 512,
                 keep_res: bool = False, train_affine: Optional[CenterAffine] = None, color_aug: bool = True,
                 flip_test: bool = False, K: int = 100, score_thresh: float = 0.0,
                 loss_weights: Tuple[float, float, float] = (1.0, 0.1, 1.0), max_objs: int = 128,
                 reinit_hm: bool = False, input_format: str = 'BGR'):
        super().__init__()
        shapes = backbone.output_shape()
        if in_feature not in shapes:
            raise ValueError(f'{_KEY}.IN_FEATURE: {in_feature!r}; allowed: {sorted(shapes)} (the backbone outputs)')
        self.stride = shapes[in_feature].stride
        if self.stride != 4:
            raise ValueError(f'{_KEY}.IN_FEATURE: {in_feature!r} has stride {self.stride}; allowed: a stride-4 '
                             f'feature (CenterNet decodes at stride 4)')
        if input_format not in ('BGR', 'RGB'):
            raise ValueError(f"INPUT.FORMAT: {input_format!r}; allowed: 'BGR', 'RGB'")
        self.backbone, self.in_feature, self.num_classes = backbone, in_feature, num_classes
        self.heads = CenterNetHeads(shapes[in_feature].channels, {'hm': num_classes, 'wh': 2, 'reg': 2}, head_conv,
                                    final_kernel)
        self.head_conv, self.K, self.score_thresh, self.flip_test = head_conv, K, score_thresh, flip_test
        self.test_affine = CenterAffine(input_size, train=False, keep_res=keep_res)
        self.train_affine = train_affine or CenterAffine(input_size, train=True)
        self.color_aug, self.loss_weights, self.max_objs = color_aug, loss_weights, max_objs
        self.reinit_hm, self.input_format = reinit_hm, input_format
        self.color_rng = np.random.RandomState(123)  # CenterNet's colour-augmentation generator and seed
        self.register_buffer('pixel_mean', torch.tensor(pixel_mean).view(-1, 1, 1) / 255., False)
        self.register_buffer('pixel_std', torch.tensor(pixel_std).view(-1, 1, 1) / 255., False)
        self.register_load_state_dict_pre_hook(self._check_heads)

    @classmethod
    def from_config(cls, cfg) -> Dict[str, Any]:
        c = cfg.MODEL.DLAP.CENTERNET
        train_affine = CenterAffine(c.INPUT_SIZE, train=True, random_crop=c.RANDOM_CROP, scale=c.SCALE,
                                    shift=c.SHIFT, flip=c.FLIP)
        return dict(backbone=build_backbone(cfg), in_feature=c.IN_FEATURE, num_classes=c.NUM_CLASSES,
                    pixel_mean=tuple(cfg.MODEL.PIXEL_MEAN), pixel_std=tuple(cfg.MODEL.PIXEL_STD),
                    head_conv=c.HEAD_CONV, final_kernel=c.FINAL_KERNEL, input_size=c.INPUT_SIZE,
                    keep_res=c.KEEP_RES, train_affine=train_affine, color_aug=c.COLOR_AUG, flip_test=c.FLIP_TEST,
                    K=c.K, score_thresh=c.SCORE_THRESH, loss_weights=(c.HM_WEIGHT, c.WH_WEIGHT, c.OFF_WEIGHT),
                    max_objs=c.MAX_OBJS, reinit_hm=c.REINIT_HM, input_format=cfg.INPUT.FORMAT)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # --- loading -------------------------------------------------------------------------------------------------
    def _check_heads(self, module: nn.Module, state_dict: Dict[str, Any], prefix: str, *args: Any) -> None:
        """All or none of the heads load (none: fresh heads, e.g. from an ImageNet DLA); a heatmap head of another
        class count is an error naming both, or with ``REINIT_HM`` is left fresh (logged)."""
        own = {f'heads.{k}': v for k, v in self.heads.state_dict().items()}
        given = {k: state_dict[prefix + k] for k in own if prefix + k in state_dict}
        if not given:
            return
        bad = sorted(k for k in own if k not in given or tuple(given[k].shape) != tuple(own[k].shape))
        last = f'heads.{last_conv_name("hm", self.head_conv)}.'
        if bad and all(k.startswith(last) for k in bad) and self.reinit_hm:
            for k in bad:
                state_dict.pop(prefix + k, None)
            _logger.info('re-initialised the heatmap head for %d classes (%s.REINIT_HM; bias prior -2.19): %s',
                         self.num_classes, _KEY, ', '.join(bad))
            return
        if bad:
            heads = pending_file().get('heads') or {}
            theirs = f"has {heads['hm']} classes" if 'hm' in heads else 'does not fit'
            raise CheckpointError(
                f"heads: the checkpoint's hm head {theirs}, the model's {self.num_classes} ({_KEY}.NUM_CLASSES); set "
                f'{_KEY}.REINIT_HM True to fine-tune with a fresh {self.num_classes}-class heatmap head. Missing or '
                f'mis-shaped (detectron2 drops mis-shaped tensors with a warning): {", ".join(bad)}')

    # --- inputs --------------------------------------------------------------------------------------------------
    def _bgr(self, x: Dict[str, Any]) -> np.ndarray:
        img = x['image'].permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(img[:, :, ::-1] if self.input_format == 'RGB' else img)

    def _normalize(self, images: np.ndarray) -> torch.Tensor:
        """(N, H, W, 3) BGR in [0, 1] -> normalised (N, 3, H, W) on the model's device."""
        x = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2)
        return ((x - self.pixel_mean) / self.pixel_std).float().contiguous()

    def preprocess_train(self, batched_inputs: List[Dict[str, Any]]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """CenterNet's training inputs and targets: random affine (+ flip), colour augmentation, normalisation;
        targets of the boxes mapped by the same affine onto the stride-4 map."""
        images, targets = [], []
        for x in batched_inputs:
            img = self._bgr(x)
            t = self.train_affine.get_transform(img)
            inp = t.apply_image(img).astype(np.float32) / 255.
            if self.color_aug:
                color_augment(inp, self.color_rng)
            images.append(inp)
            out = t.at_stride(self.stride)
            inst = x['instances']
            boxes = out.apply_box(inst.gt_boxes.tensor.cpu().numpy()) if len(inst) else np.zeros((0, 4))
            targets.append(ctdet_targets(torch.from_numpy(np.asarray(boxes, dtype=np.float32)), inst.gt_classes,
                                         self.num_classes, (out.size[1], out.size[0]), self.max_objs))
        batch = {k: torch.stack([t[k] for t in targets]).to(self.device) for k in targets[0]}
        return self._normalize(np.stack(images)), batch

    def preprocess_test(self, x: Dict[str, Any]) -> Tuple[torch.Tensor, CenterAffineTransform]:
        """CenterNet's test input of one image (with its mirror image when flip-testing) and the transform."""
        img = self._bgr(x)
        t = self.test_affine.get_transform(img)
        inp = t.apply_image(img)[None].astype(np.float64) / 255.
        if self.flip_test:
            inp = np.concatenate([inp, inp[:, :, ::-1]])
        return self._normalize(np.ascontiguousarray(inp)), t

    # --- model ---------------------------------------------------------------------------------------------------
    def head_outputs(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Raw head outputs (``hm`` logits) of normalised inputs."""
        return self.heads(self.backbone(images)[self.in_feature])

    def losses(self, outputs: Dict[str, torch.Tensor], targets: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        w_hm, w_wh, w_off = self.loss_weights
        terms = ctdet_loss(outputs, targets, 1.0, 1.0, 1.0)
        return {'loss_hm': w_hm * terms['hm_loss'], 'loss_wh': w_wh * terms['wh_loss'],
                'loss_off': w_off * terms['off_loss']}

    def decode(self, outputs: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top ``K`` of one image's outputs (two when flip-testing: heatmap and size averaged with the mirrored
        pass, offsets of the first, as CenterNet): boxes at the output stride, scores, classes."""
        hm, wh, reg = outputs['hm'].sigmoid(), outputs['wh'], outputs['reg']
        if self.flip_test:
            hm = (hm[0:1] + hm[1:2].flip(3)) / 2
            wh = (wh[0:1] + wh[1:2].flip(3)) / 2
            reg = reg[0:1]
        boxes, scores, classes = ctdet_decode(hm, wh, reg, K=min(self.K, hm.shape[2] * hm.shape[3]))
        return boxes[0], scores[0], classes[0]

    def inference(self, batched_inputs: List[Dict[str, Any]]) -> List[Dict[str, Instances]]:
        results = []
        for x in batched_inputs:
            images, t = self.preprocess_test(x)
            boxes, scores, classes = self.decode(self.head_outputs(images))
            out = t.at_stride(self.stride)
            pts = out.inverse_coords(boxes.detach().reshape(-1, 2).cpu().double().numpy())
            height, width = x['image'].shape[-2:]
            inst = Instances((height, width))
            inst.pred_boxes = Boxes(torch.from_numpy(pts.reshape(-1, 4)).float().to(self.device))
            inst.scores, inst.pred_classes = scores, classes
            inst = inst[scores > self.score_thresh]
            results.append({'instances': detector_postprocess(inst, x.get('height', height), x.get('width', width))})
        return results

    def forward(self, batched_inputs: List[Dict[str, Any]]):
        if not self.training:
            return self.inference(batched_inputs)
        missing = [i for i, x in enumerate(batched_inputs) if 'instances' not in x]
        if missing:
            raise ValueError(f'batched_inputs: images {missing} have no "instances"; training needs them')
        images, targets = self.preprocess_train(batched_inputs)
        return self.losses(self.head_outputs(images), targets)
