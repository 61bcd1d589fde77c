"""BSDS500 boundaries for mmseg: ``BSDS500Dataset`` and the ``LoadBoundaryAnnotations`` transform.

Layouts (docs/boundary.md)::

    BSR/BSDS500/data/images/{train,val,test}/<id>.jpg       the official release (data_root = BSR/BSDS500/data)
    BSR/BSDS500/data/groundTruth/{train,val,test}/<id>.mat  'groundTruth': a 1 x K cell of annotator structs, each
                                                            with 'Segmentation' and 'Boundaries'
    HED-BSDS/train_pair.lst                                 lines 'train/aug_data/<aug>/<id>.jpg
                                                            train/aug_gt/<aug>/<id>.png', relative to data_root; a
                                                            gray label holds the fraction of annotators x 255

The label rule (:func:`consensus_label`): with ``f`` the fraction of annotators marking a pixel, the pixel is a
boundary (1) if ``f > edge_threshold``, ignored (``ignore_index``) if ``0 < f <= edge_threshold`` and the ignore band
is on, background (0) otherwise. The defaults (0.3, band on) are DLA-AFA's and RCF's rule.
"""
import io
import os.path as osp
from typing import Any, List, Union

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS, TRANSFORMS
from scipy.io import loadmat

from ..camvid import check_folders

__all__ = ['BSDS500Dataset', 'LoadBoundaryAnnotations', 'consensus_label', 'read_bsds_boundaries',
           'read_boundary_annotation', 'BOUNDARY_CLASSES', 'EDGE_THRESHOLD']

BOUNDARY_CLASSES = ('background', 'boundary')
EDGE_THRESHOLD = 0.3  # DLA-AFA / RCF: a boundary when more than 30% of the annotators mark it


def consensus_label(fraction: np.ndarray, edge_threshold: float = EDGE_THRESHOLD, ignore_band: bool = True,
                    ignore_index: int = 255) -> np.ndarray:
    """uint8 label from the fraction of annotators marking each pixel: 1 above ``edge_threshold``, ``ignore_index``
    in ``(0, edge_threshold]`` when ``ignore_band``, else 0."""
    if not 0 <= edge_threshold < 1:
        raise ValueError(f'edge_threshold: must be in [0, 1), got {edge_threshold!r}')
    f = np.asarray(fraction, dtype=np.float64)
    label = np.zeros(f.shape, dtype=np.uint8)
    if ignore_band:
        label[f > 0] = ignore_index
    label[f > edge_threshold] = 1
    return label


def read_bsds_boundaries(source: Union[str, bytes]) -> List[np.ndarray]:
    """The annotators' ``Boundaries`` (bool H x W each) of a BSDS ``groundTruth`` .mat file (path or bytes)."""
    name = source if isinstance(source, str) else '<bytes>'
    try:
        mat = loadmat(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (ValueError, NotImplementedError, OSError, TypeError) as e:
        raise ValueError(f'groundTruth: cannot read {name!r} as a MATLAB v5 .mat file ({e})') from e
    cells = mat.get('groundTruth')
    out: List[np.ndarray] = []
    for cell in cells.ravel() if isinstance(cells, np.ndarray) and cells.dtype == object else ():
        if 'Boundaries' not in (getattr(cell.dtype, 'names', None) or ()):
            out = []
            break
        b = cell['Boundaries']
        while b.dtype == object:  # a struct field is a 1 x 1 object array around the map
            b = b.ravel()[0]
        out.append(np.asarray(b).astype(bool))
    if not out or any(b.ndim != 2 or b.shape != out[0].shape for b in out):
        raise ValueError(f"groundTruth: {name!r} holds no 'groundTruth' cell array of annotator structs with "
                         f"'Boundaries' maps of one shape (the BSDS500 layout)")
    return out


def read_boundary_annotation(path: str, backend_args: Any = None) -> np.ndarray:
    """Fraction of annotators marking each pixel (float H x W in [0, 1]): from a BSDS .mat (mean of the annotators'
    ``Boundaries``) or from a gray label image (value / 255, first channel; HED-BSDS)."""
    data = fileio.get(path, backend_args=backend_args)
    if path.lower().endswith('.mat'):
        return np.mean(np.stack(read_bsds_boundaries(data)), axis=0)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8:
        raise ValueError(f'label: {path!r} is not a readable 8-bit image')
    return (img if img.ndim == 2 else img[..., 0]).astype(np.float64) / 255.0


@TRANSFORMS.register_module()
class LoadBoundaryAnnotations(BaseTransform):
    """Load ``seg_map_path`` (BSDS .mat or a gray label image) into ``gt_seg_map`` by :func:`consensus_label`.

    The rule comes from the dataset (``results['boundary_rule']``, set by :class:`BSDS500Dataset`); without one the
    defaults apply (``edge_threshold=0.3``, ignore band on, ``ignore_index=255``).

    Args:
        backend_args: mmengine file backend arguments.
    """

    def __init__(self, backend_args: Any = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        rule = dict(edge_threshold=EDGE_THRESHOLD, ignore_band=True, ignore_index=255)
        rule.update(results.get('boundary_rule') or {})
        fraction = read_boundary_annotation(results['seg_map_path'], self.backend_args)
        results['gt_seg_map'] = consensus_label(fraction, **rule)
        results.setdefault('seg_fields', []).append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(backend_args={self.backend_args})'


@DATASETS.register_module()
class BSDS500Dataset(BaseSegDataset):
    """BSDS500 boundaries (2 classes: background, boundary; ignore 255) from the BSR layout or HED-style pair lists.

    Without ``ann_file`` images ``<img_path>/<id>.jpg`` pair with ``<seg_map_path>/<id>.mat``; with ``ann_file`` (e.g.
    HED-BSDS's ``train_pair.lst``) each line names an image and its label, relative to ``data_prefix`` (by default
    ``data_root``). Use :class:`LoadBoundaryAnnotations` in the pipeline, not mmseg's ``LoadAnnotations``.

    Args:
        edge_threshold: Fraction of annotators above which a pixel is a boundary (see :func:`consensus_label`).
        ignore_band: Ignore pixels marked by a fraction in ``(0, edge_threshold]`` (else they are background).
        img_suffix: Image suffix (directory layout).
        seg_map_suffix: Ground-truth suffix (directory layout).
        **kwargs: :class:`mmseg.datasets.BaseSegDataset` arguments (``data_root``, ``data_prefix``, ``ann_file``,
            ``pipeline``, ``ignore_index``...).
    """

    METAINFO = dict(classes=BOUNDARY_CLASSES, palette=[[0, 0, 0], [255, 255, 255]])

    def __init__(self, edge_threshold: float = EDGE_THRESHOLD, ignore_band: bool = True, img_suffix: str = '.jpg',
                 seg_map_suffix: str = '.mat', **kwargs: Any) -> None:
        consensus_label(np.zeros(1), edge_threshold)  # validates edge_threshold
        self.boundary_rule = dict(edge_threshold=float(edge_threshold), ignore_band=bool(ignore_band))
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def _pair_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path') or self.data_root or ''
        ann_dir = self.data_prefix.get('seg_map_path') or img_dir
        data_list = []
        lines = fileio.get_text(self.ann_file, backend_args=self.backend_args).splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"ann_file: line {n} of {self.ann_file!r} must hold 'image_path label_path', "
                                 f'got {line.strip()!r}')
            data_list.append(dict(img_path=osp.join(img_dir, parts[0]), seg_map_path=osp.join(ann_dir, parts[1])))
        return data_list

    def load_data_list(self) -> List[dict]:
        """The image/label pairs (directory layout or pair list), each carrying the label rule."""
        if self.ann_file:
            if '://' not in self.ann_file and not osp.isfile(self.ann_file):
                raise FileNotFoundError(f'ann_file: no such pair list {self.ann_file!r}')
            data_list = self._pair_list()
        else:
            check_folders(self, 'groundTruth', 'groundTruth', 'id')
            data_list = super().load_data_list()
        if not data_list:
            where = self.ann_file or self.data_prefix.get('img_path')
            raise FileNotFoundError(f'BSDS500Dataset: no image in {where!r}')
        missing = [d['seg_map_path'] for d in data_list
                   if '://' not in d['seg_map_path'] and not osp.isfile(d['seg_map_path'])]
        if missing:
            raise FileNotFoundError(f'BSDS500Dataset: {len(missing)} image(s) without ground truth, e.g. '
                                    f'{missing[0]!r}')
        for d in data_list:
            d.update(boundary_rule=dict(self.boundary_rule, ignore_index=self.ignore_index), label_map=self.label_map,
                     reduce_zero_label=False, seg_fields=[])
        return data_list
