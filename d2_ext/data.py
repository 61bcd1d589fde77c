"""A synthetic COCO-format detection dataset (the core's shapes) for tests and the demo: PNGs + instances json; and
:func:`check_datasets`, which names a ``DATASETS.*`` entry that is not registered or whose files are missing."""
import io
import json
import os
import socket
from typing import Collection, List, Tuple

import numpy as np
import pycocotools.mask as mask_util
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from PIL import Image

from dla_plugins.data.synthetic import SHAPE_CLASSES, render_shapes

__all__ = ['write_shapes_coco', 'register_shapes', 'check_datasets']


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` (named by host and process), then rename it over ``path``:
    a reader sees the old file or the whole new one, and writers of the same bytes on a shared folder cannot mix."""
    tmp = os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.{socket.gethostname()}.{os.getpid()}.tmp')
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def write_shapes_coco(root: str, num_images: int, size: Tuple[int, int] = (128, 128), max_objects: int = 3,
                      seed: int = 0) -> str:
    """Render shapes into ``root/images/*.png`` and write ``root/instances.json`` (boxes + RLE masks); returns it.

    Deterministic for a seed; every file is written atomically and ``instances.json`` last, so once it exists its
    images are complete.
    """
    img_dir = os.path.join(root, 'images')
    os.makedirs(img_dir, exist_ok=True)
    images: List[dict] = []
    annotations: List[dict] = []
    for i, s in enumerate(render_shapes(num_images, size, max_objects=max_objects, seed=seed)):
        file_name = f'{i:05d}.png'
        png = io.BytesIO()
        Image.fromarray(s.image.numpy()).save(png, format='PNG')
        _write_atomic(os.path.join(img_dir, file_name), png.getvalue())
        images.append(dict(id=i + 1, file_name=file_name, height=size[0], width=size[1]))
        for box, label in zip(s.boxes.tolist(), s.labels.tolist()):
            x0, y0, x1, y1 = (int(v) for v in box)
            m = np.zeros(size, dtype=np.uint8, order='F')
            m[y0:y1, x0:x1] = (s.mask[y0:y1, x0:x1] == label + 1).numpy()
            rle = mask_util.encode(m)
            rle['counts'] = rle['counts'].decode('ascii')
            annotations.append(dict(id=len(annotations) + 1, image_id=i + 1, category_id=label + 1,
                                    bbox=[x0, y0, x1 - x0, y1 - y0], area=float(m.sum()), iscrowd=0,
                                    segmentation=rle))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(SHAPE_CLASSES)]
    path = os.path.join(root, 'instances.json')
    _write_atomic(path, json.dumps(dict(images=images, annotations=annotations, categories=categories)).encode())
    return path


def register_shapes(name: str, root: str, num_images: int, size: Tuple[int, int] = (128, 128), max_objects: int = 3,
                    seed: int = 0, write: bool = True) -> str:
    """Write the dataset under ``root`` and register it as ``name`` (re-registering replaces it); returns ``name``.

    Masks are RLE: Mask R-CNN needs ``INPUT.MASK_FORMAT 'bitmask'``. ``write=False`` only registers files already
    written (e.g. by another process of the same job).
    """
    if write:
        json_file = write_shapes_coco(root, num_images, size, max_objects, seed)
    else:
        json_file = os.path.join(root, 'instances.json')
        if not os.path.isfile(json_file):
            raise FileNotFoundError(f'register_shapes(write=False): no {json_file!r}; expected '
                                    f'<root>/instances.json and <root>/images/*.png written by write_shapes_coco')
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, json_file, os.path.join(root, 'images'))
    return name


# The metadata fields of detectron2's dataset registrations that name local files or folders.
_DATA_PATHS = ('json_file', 'image_root', 'dirname', 'image_dir', 'gt_dir', 'panoptic_json', 'panoptic_root',
               'sem_seg_root')


def check_datasets(cfg: CfgNode, keys: Collection[str] = ('TRAIN', 'TEST'), skip: Collection[str] = ()) -> None:
    """Fail, naming the key, where an entry of ``DATASETS.<key>`` (other than ``skip``) is not registered
    (``ValueError``) or a file or folder its metadata names is missing (``FileNotFoundError``): what a run would
    otherwise find only when it builds its data loaders, in every process."""
    registered = DatasetCatalog.list()
    for key in keys:
        for name in (n for n in cfg.DATASETS[key] if n not in skip):
            if name not in registered:
                raise ValueError(f'DATASETS.{key}: dataset {name!r} is not registered; registered: '
                                 f'{", ".join(sorted(registered))}')
            meta = MetadataCatalog.get(name)
            for field in _DATA_PATHS:
                path = meta.get(field)
                if isinstance(path, str) and '://' not in path and not os.path.exists(path):
                    raise FileNotFoundError(
                        f'DATASETS.{key}: dataset {name!r}: {field} {path!r} does not exist (detectron2 finds its '
                        f'builtin datasets under $DETECTRON2_DATASETS, now '
                        f'{os.environ.get("DETECTRON2_DATASETS", "datasets")!r})')
