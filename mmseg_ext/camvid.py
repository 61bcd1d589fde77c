"""``CamVidDataset``: the 11-class CamVid benchmark (367 train / 101 val / 233 test), absent from mmseg 1.2.

Expected layout (see docs/mmseg.md)::

    data/camvid/images/{train,val,test}/<name>.png        RGB frames (360x480 in the usual release)
    data/camvid/annotations/{train,val,test}/<name>.png   uint8 labels 0..10, void = 255 (ignored)
"""
import os.path as osp
from typing import Any, List

from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

__all__ = ['CamVidDataset', 'CAMVID_CLASSES', 'CAMVID_PALETTE', 'CAMVID_SPLITS']

CAMVID_CLASSES = ('Sky', 'Building', 'Pole', 'Road', 'Sidewalk', 'Tree', 'SignSymbol', 'Fence', 'Car', 'Pedestrian',
                  'Bicyclist')
# The colours of the original CamVid colour coding for these classes.
CAMVID_PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [0, 0, 192], [128, 128, 0],
                  [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192]]
CAMVID_SPLITS = dict(train=367, val=101, test=233)


def check_folders(dataset: BaseSegDataset, label_name: str, label_dir: str, stem: str) -> None:
    """Raise FileNotFoundError naming the layout when ``dataset``'s image or label folder (local paths) is missing."""
    img_dir, ann_dir = dataset.data_prefix.get('img_path'), dataset.data_prefix.get('seg_map_path')
    for what, folder in (('image', img_dir), (label_name, ann_dir)):
        if folder and '://' not in folder and not osp.isdir(folder):
            raise FileNotFoundError(
                f'{type(dataset).__name__}: no {what} folder {folder!r} (data_root={dataset.data_root!r}); expected '
                f'<data_root>/images/<split>/<{stem}>{dataset.img_suffix} and '
                f'<data_root>/{label_dir}/<split>/<{stem}>{dataset.seg_map_suffix}')


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

    def load_data_list(self) -> List[dict]:
        """mmseg's directory listing, after checking the folders exist and every image has its label map."""
        check_folders(self, 'label', 'annotations', 'name')
        img_dir, ann_dir = self.data_prefix.get('img_path'), self.data_prefix.get('seg_map_path')
        data_list = super().load_data_list()
        if not data_list and not self.ann_file:
            raise FileNotFoundError(f'CamVidDataset: no *{self.img_suffix} image in {img_dir!r}')
        missing = [d['seg_map_path'] for d in data_list if 'seg_map_path' in d and not osp.isfile(d['seg_map_path'])]
        if missing and '://' not in (ann_dir or ''):
            raise FileNotFoundError(f'CamVidDataset: {len(missing)} image(s) without a label map, e.g. {missing[0]!r}')
        return data_list

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output for sample ``idx``; a file that fails to load is named in the error."""
        try:
            return super().prepare_data(idx)
        except Exception as e:
            info = self.get_data_info(idx)
            raise RuntimeError(f"CamVidDataset: sample {idx} failed to load (image {info.get('img_path')!r}, labels "
                               f"{info.get('seg_map_path')!r}): {type(e).__name__}: {e}") from e
