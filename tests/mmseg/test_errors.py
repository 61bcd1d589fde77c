"""mmseg adapter, bad data (docs/errors.md): a missing CamVid data root, an image without labels, a corrupt label
map, and the demo's chance-level helper on missing or unreadable labels."""
import os

import pytest
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS

from mmseg_ext.demo import majority_class_miou
from mmseg_ext.synthetic import write_camvid_layout

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]


def _camvid(root: str):
    init_default_scope('mmseg')
    return DATASETS.build(dict(type='CamVidDataset', data_root=root, pipeline=PIPELINE,
                               data_prefix=dict(img_path='images/train', seg_map_path='annotations/train')))


def test_missing_data_root(tmp_path):
    root = str(tmp_path / 'camvid')
    with pytest.raises(FileNotFoundError) as e:
        _camvid(root)
    assert str(e.value) == (f"CamVidDataset: no image folder {os.path.join(root, 'images/train')!r} "
                            f"(data_root={root!r}); expected <data_root>/images/<split>/<name>.png and "
                            f"<data_root>/annotations/<split>/<name>.png")


def test_missing_and_corrupt_label_maps(tmp_path):
    root = write_camvid_layout(str(tmp_path / 'camvid'), dict(train=3), size=(32, 32))
    labels = tmp_path / 'camvid' / 'annotations' / 'train'
    ds = _camvid(root)
    assert len(ds) == 3 and ds[0]['data_samples'].gt_sem_seg.data.shape[-2:] == (32, 32)
    (labels / 'train_00001.png').write_bytes(b'not a png')
    with pytest.raises(RuntimeError) as e:
        ds[1]
    assert str(e.value).startswith(f"CamVidDataset: sample 1 failed to load (image "
                                   f"{str(tmp_path / 'camvid' / 'images' / 'train' / 'train_00001.png')!r}, labels "
                                   f"{str(labels / 'train_00001.png')!r}): ")
    (labels / 'train_00002.png').unlink()
    with pytest.raises(FileNotFoundError) as e:
        _camvid(root)
    assert str(e.value) == (f"CamVidDataset: 1 image(s) without a label map, e.g. "
                            f"{str(labels / 'train_00002.png')!r}")
    with pytest.raises(ValueError) as e:
        majority_class_miou(str(labels / '*.png'))
    assert str(e.value) == f"label map {str(labels / 'train_00001.png')!r}: not a readable 8-bit image"
    with pytest.raises(FileNotFoundError) as e:
        majority_class_miou(str(tmp_path / 'none' / '*.png'))
    assert str(e.value) == f"label_glob: no file matches {str(tmp_path / 'none' / '*.png')!r}"
