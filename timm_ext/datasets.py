"""Readers for the datasets of the paper's Table 4, each from its official on-disk layout (``--dataset`` of
``python -m timm_ext.train``).

- ``cub`` (CUB-200-2011) and ``nabirds`` (NABirds): their own ``images.txt``, ``train_test_split.txt``,
  ``image_class_labels.txt`` and ``classes.txt`` (:class:`ListFileDataset`).
- ``cars``, ``aircraft``, ``food101``: torchvision's ``StanfordCars`` (needs scipy for its ``.mat`` files),
  ``FGVCAircraft`` (variant level, ``trainval`` / ``test``) and ``Food101``, never downloading.
- ``imagefolder``: timm's ``create_dataset`` on ``<data_dir>/train`` and ``<data_dir>/val`` (or ``validation``).

``--data-dir`` is the folder holding the dataset's top folder (``CUB_200_2011``, ``nabirds``, ``stanford_cars``,
``fgvc-aircraft-2013b``, ``food-101``), as torchvision's ``root``, or that folder itself. Every file the reader needs
is checked first: a missing one is named, with the whole expected layout.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image
from timm.data import create_dataset
from torch.utils.data import Dataset

__all__ = ['DATASETS', 'LAYOUTS', 'DatasetLayout', 'ListFileDataset', 'create_datasets', 'find_dataset_root']


@dataclass(frozen=True)
class DatasetLayout:
    """Where a dataset lives on disk and what the paper's Table 4 says about it."""
    title: str
    folder: str  # the top folder of the official archive
    required: Tuple[str, ...]  # relative to ``folder``; a trailing '/' marks a folder
    classes: int  # Table 4 (#Class); FGVC-Aircraft: 100 variants on disk, 102 in the paper's table
    train: int  # Table 4 (#Train)
    test: int  # Table 4 (#Test)

    def describe(self) -> str:
        return f"<data_dir>/{self.folder}/{{{', '.join(self.required)}}}"


_LIST_FILES = ('images.txt', 'train_test_split.txt', 'image_class_labels.txt', 'classes.txt', 'images/')
LAYOUTS: Dict[str, DatasetLayout] = {
    'cub': DatasetLayout('CUB-200-2011', 'CUB_200_2011', _LIST_FILES, 200, 5994, 5794),
    'cars': DatasetLayout('Stanford Cars', 'stanford_cars', (
        'devkit/cars_meta.mat', 'devkit/cars_train_annos.mat', 'cars_test_annos_withlabels.mat', 'cars_train/',
        'cars_test/'), 196, 8144, 8041),
    'aircraft': DatasetLayout('FGVC-Aircraft', 'fgvc-aircraft-2013b', (
        'data/variants.txt', 'data/images_variant_trainval.txt', 'data/images_variant_test.txt', 'data/images/'),
        102, 6667, 3333),
    'food101': DatasetLayout('Food-101', 'food-101', ('meta/train.json', 'meta/test.json', 'images/'),
                             101, 75750, 25250),
    'nabirds': DatasetLayout('NABirds', 'nabirds', _LIST_FILES, 555, 23929, 24633),
}
DATASETS: Tuple[str, ...] = ('imagefolder', *LAYOUTS)


def find_dataset_root(name: str, data_dir: Path) -> Path:
    """The dataset's top folder (``data_dir/<folder>`` or ``data_dir`` itself), with every required file checked.

    Raises:
        FileNotFoundError: a required file or folder is missing (named, with the expected layout).
    """
    layout = LAYOUTS[name]
    base = data_dir if data_dir.name == layout.folder and not (data_dir / layout.folder).is_dir() \
        else data_dir / layout.folder
    for rel in layout.required:
        path = base / rel.rstrip('/')
        if not (path.is_dir() if rel.endswith('/') else path.is_file()):
            raise FileNotFoundError(f"dataset {name!r}: missing {str(path) + ('/' if rel.endswith('/') else '')}; "
                                    f'expected the official {layout.title} layout: {layout.describe()} (--data-dir '
                                    f'is the folder holding {layout.folder}/, or {layout.folder}/ itself)')
    return base


def _read_pairs(path: Path, name: str) -> List[Tuple[str, str]]:
    """``<key> <value>`` lines (the value may contain spaces), in file order."""
    pairs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(' ')
        if not value:
            raise ValueError(f"dataset {name!r}: {path} line {n}: expected '<id> <value>', got {line.strip()!r}")
        pairs.append((key, value.strip()))
    return pairs


def _pil_rgb(path: str) -> Image.Image:
    with open(path, 'rb') as f:
        return Image.open(f).convert('RGB')


class ListFileDataset(Dataset):
    """CUB-200-2011 or NABirds from its list files: ``images.txt`` (id, path under ``images/``),
    ``train_test_split.txt`` (id, 1 = train / 0 = test), ``image_class_labels.txt`` (id, class id) and
    ``classes.txt`` (class id, name).

    Labels are the class ids that label at least one image, in increasing order, numbered from 0: CUB's ids 1..200
    become 0..199; NABirds' 555 leaf classes (its ``classes.txt`` also lists the hierarchy's inner nodes) become
    0..554. Samples are in ``images.txt`` order.

    Args:
        root: the dataset's top folder (``CUB_200_2011``, ``nabirds``).
        train: the training split (else the test split).
        transform: applied to the PIL RGB image (timm's loader sets it).
        name: the dataset's name in error messages.
    """

    def __init__(self, root: Path, train: bool, transform: Optional[Callable] = None, name: str = 'cub') -> None:
        root = Path(root)
        images = _read_pairs(root / 'images.txt', name)
        split = dict(_read_pairs(root / 'train_test_split.txt', name))
        labels = dict(_read_pairs(root / 'image_class_labels.txt', name))
        names = dict(_read_pairs(root / 'classes.txt', name))
        for file, table in (('train_test_split.txt', split), ('image_class_labels.txt', labels)):
            missing = [i for i, _ in images if i not in table]
            if missing:
                raise ValueError(f"dataset {name!r}: {root / file} has no line for {len(missing)} image id(s) of "
                                 f'images.txt, first {missing[0]!r}')
        used = sorted({labels[i] for i, _ in images}, key=int)
        unnamed = [c for c in used if c not in names]
        if unnamed:
            raise ValueError(f"dataset {name!r}: class id {unnamed[0]!r} labels images but is not in "
                             f"{root / 'classes.txt'}")
        index = {c: k for k, c in enumerate(used)}
        want = '1' if train else '0'
        self.root, self.train, self.transform = root, train, transform
        self.class_ids: List[str] = used
        self.classes: List[str] = [names[c] for c in used]
        self.class_to_idx: Dict[str, int] = {n: k for k, n in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = [(str(root / 'images' / rel), index[labels[i]]) for i, rel in images
                                               if split[i] == want]
        self.targets: List[int] = [t for _, t in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Tuple[Any, int]:
        path, target = self.samples[i]
        img = _pil_rgb(path)
        return (self.transform(img) if self.transform is not None else img), target


def _split_dir(root: Path, names: Sequence[str]) -> str:
    for name in names:
        if (root / name).is_dir():
            return name
    raise FileNotFoundError(f"data_dir: {str(root)!r} has none of the split folders {list(names)}; expected an "
                            f"ImageFolder: <data_dir>/train/<class>/<image> and <data_dir>/val/<class>/<image>")


def create_datasets(name: str, data_dir: str) -> Tuple[Dataset, Dataset, int]:
    """(train dataset, evaluation dataset, number of classes) of ``name`` (one of :data:`DATASETS`) under
    ``data_dir``. The evaluation split is the test split (the paper reports test accuracy), ``val`` for
    ``imagefolder``. Every dataset has a settable ``transform`` (timm's ``create_loader`` sets it).

    Raises:
        ValueError: unknown ``name``.
        FileNotFoundError: the layout is incomplete (the missing file is named).
    """
    if name not in DATASETS:
        raise ValueError(f'dataset: unknown {name!r}; allowed: {list(DATASETS)}')
    root = Path(data_dir)
    if name == 'imagefolder':
        train_split, val_split = _split_dir(root, ('train',)), _split_dir(root, ('val', 'validation'))
        ds_train = create_dataset('', root=str(root), split=train_split, is_training=True)
        return ds_train, create_dataset('', root=str(root), split=val_split), len(ds_train.reader.class_to_idx)
    base = find_dataset_root(name, root)
    if name in ('cub', 'nabirds'):
        ds_train, ds_eval = (ListFileDataset(base, train, name=name) for train in (True, False))
        return ds_train, ds_eval, len(ds_train.classes)
    from torchvision import datasets as tvd  # torchvision wants the folder holding the dataset's folder

    if name == 'cars':
        ds_train, ds_eval = (tvd.StanfordCars(str(base.parent), split=s) for s in ('train', 'test'))
    elif name == 'aircraft':
        ds_train, ds_eval = (tvd.FGVCAircraft(str(base.parent), split=s, annotation_level='variant')
                             for s in ('trainval', 'test'))
    else:
        ds_train, ds_eval = (tvd.Food101(str(base.parent), split=s) for s in ('train', 'test'))
    return ds_train, ds_eval, len(ds_train.classes)
