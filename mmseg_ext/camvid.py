"""``CamVidDataset``: the 11-class CamVid benchmark (367 train / 101 val / 233 test), absent from mmseg 1.2.

Expected layout (see docs/mmseg.md)::

    data/camvid/images/{train,val,test}/<name>.png        RGB frames (360x480 in the usual release)
    data/camvid/annotations/{train,val,test}/<name>.png   uint8 labels 0..10, void = 255 (ignored)
"""
from typing import Any

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

__all__ = ['CamVidDataset', 'CAMVID_CLASSES', 'CAMVID_PALETTE', 'CAMVID_SPLITS']

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Sidewalk', 'Tree', 'SignSymbol', 'Fence', 'Car', 'Pedestrian',
                  'Bicyclist')
# The colours of the original CamVid colour coding for these classes.
CAMVID_PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [0, 0, 192], [128, 128, 0],
                  [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
CAMVID_SPLITS = dict(train=367, val=101, test=233)


@DATASETS.register_module()
class CamVidDataset(BaseSegDataset):
    """CamVid, 11 classes plus void (label 255, ignored). Images and label maps share their file name.

    Args:
        img_suffix: Image file suffix.
        seg_map_suffix: Label map file suffix.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments (``data_root``, ``data_prefix``, ``pipeline``...).
    """

    METAINFO = dict(classes=CAMVID_CLASSES, palette=CAMVID_PALETTE)

    def __init__(self, img_suffix: str = '.png', seg_map_suffix: str = '.png', **kwargs: Any) -> None:
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)
